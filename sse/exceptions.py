"""
Exceptions raised by the sse app.

    SSEError
     +-- ConfigurationError   a setting or environment variable is invalid
     +-- MalformedEvent       a NATS message cannot be decoded as SendSSE
     +-- AuthenticationFailed a stream request carries no valid token
"""

from django.core.exceptions import ImproperlyConfigured


class SSEError(Exception):
    """Base class of every error that the sse app raises on purpose."""


class ConfigurationError(SSEError, ImproperlyConfigured):
    """
    A configuration value is missing or invalid.

    The message names the environment variable or setting, shows the
    offending value (masked for secrets) and states what is allowed.
    """

    def __init__(self, name, value, allowed, *, secret=False):
        self.name = name
        self.value = value
        self.allowed = allowed
        shown = "'***'" if secret and value else repr(value)
        super().__init__(f"{name}={shown} is invalid: {allowed}")


class MalformedEvent(SSEError):
    """A NATS message claims to be a SendSSE event but cannot be decoded."""


class AuthenticationFailed(SSEError):
    """
    A stream request is not authenticated.

    ``code`` is a stable machine-readable identifier and ``detail`` a short
    sentence for humans; both end up in the JSON body of the 401 response.
    """

    def __init__(self, code, detail):
        self.code = code
        self.detail = detail
        super().__init__(detail)
