"""
Cross-origin resource sharing (CORS) for the stream endpoints.

A browser page on another origin may open a stream only if the response
allows its origin, and it sends a preflight ``OPTIONS`` request first
because the stream needs the non-safelisted ``x-access-token`` or
``Authorization`` header. The rules come from ``SSE_CORS_ALLOW_ORIGINS``,
``SSE_CORS_ALLOW_METHODS``, ``SSE_CORS_ALLOW_HEADERS`` and
``SSE_CORS_ALLOW_CREDENTIALS``.

A request that the rules do not allow gets its normal response without
``Access-Control-*`` headers, so the browser withholds the response from
the page and nothing else changes.
"""

import functools

from .authentication import header
from .conf import get_config

__all__ = ["CORSPolicy", "get_policy", "is_preflight", "preflight_headers", "response_headers"]

# Caches must not serve a response computed for one origin to another,
# and a preflight response also depends on the requested method and headers.
VARY_RESPONSE = (b"vary", b"Origin")
VARY_PREFLIGHT = (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers")


class CORSPolicy:
    """
    The CORS rules of the stream endpoints.

    Origins and header names match case-insensitively. An origin of ``*``
    allows every origin, and one ``*`` inside an origin matches one or more
    characters, as in ``https://*.example.com``. ``*`` in the methods or
    headers allows any. ``OPTIONS`` is always an allowed method.
    """

    def __init__(self, allow_origins=("*",), allow_methods=("GET",), allow_headers=(), allow_credentials=True):
        origins = [origin.lower() for origin in allow_origins]
        self.allow_any_origin = "*" in origins
        self.exact_origins = frozenset(origin for origin in origins if "*" not in origin)
        self.wildcard_origins = tuple(
            tuple(origin.split("*", 1)) for origin in origins if "*" in origin and origin != "*"
        )

        methods = {method.upper() for method in allow_methods}
        self.allow_any_method = "*" in methods
        self.allowed_methods = frozenset(methods | {"OPTIONS"})

        headers = {name.lower() for name in allow_headers}
        self.allow_any_header = "*" in headers
        self.allowed_headers = frozenset(headers)

        self.allow_credentials = allow_credentials
        # Browsers reject "Access-Control-Allow-Origin: *" on a credentialed
        # request, so with credentials the allowed origin is echoed instead.
        self.send_wildcard = self.allow_any_origin and not allow_credentials

    def allows_origin(self, origin):
        """Return whether ``origin``, the value of the ``Origin`` header, is allowed."""
        if self.allow_any_origin:
            return True

        origin = origin.lower()
        if origin in self.exact_origins:
            return True
        return any(
            len(origin) > len(prefix) + len(suffix) and origin.startswith(prefix) and origin.endswith(suffix)
            for prefix, suffix in self.wildcard_origins
        )

    def allows_method(self, method):
        return self.allow_any_method or method.upper() in self.allowed_methods

    def allows_headers(self, names):
        """Return whether every header name in ``names`` (lower case) is allowed."""
        return self.allow_any_header or all(name in self.allowed_headers for name in names)

    def preflight_headers(self, origin, request_method, request_headers):
        """
        Return the headers of the response to a preflight request.

        ``request_headers`` is the text of ``Access-Control-Request-Headers``,
        or ``None`` without one. The result is only the ``Vary`` header when
        the origin, the method or a header is not allowed.
        """
        names = [name.strip().lower() for name in (request_headers or "").split(",") if name.strip()]
        if not (self.allows_origin(origin) and self.allows_method(request_method) and self.allows_headers(names)):
            return [VARY_PREFLIGHT]

        headers = [
            VARY_PREFLIGHT,
            self._allow_origin(origin),
            (b"access-control-allow-methods", request_method.encode("latin-1")),
        ]
        if names:
            headers.append((b"access-control-allow-headers", request_headers.strip().encode("latin-1")))
        if self.allow_credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    def response_headers(self, origin):
        """
        Return the CORS headers of an actual response to a request from
        ``origin``, which is ``None`` when the request has no ``Origin``.
        """
        if origin is None or not self.allows_origin(origin):
            return [VARY_RESPONSE]

        headers = [VARY_RESPONSE, self._allow_origin(origin)]
        if self.allow_credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    def _allow_origin(self, origin):
        value = b"*" if self.send_wildcard else origin.encode("latin-1")
        return (b"access-control-allow-origin", value)


def get_policy():
    """Return the ``CORSPolicy`` of the current configuration."""
    config = get_config()
    return _build_policy(
        config.cors_allow_origins,
        config.cors_allow_methods,
        config.cors_allow_headers,
        config.cors_allow_credentials,
    )


@functools.lru_cache(maxsize=8)
def _build_policy(allow_origins, allow_methods, allow_headers, allow_credentials):
    return CORSPolicy(allow_origins, allow_methods, allow_headers, allow_credentials)


def is_preflight(scope):
    """Return whether the request in ``scope`` is a CORS preflight request."""
    return (
        scope["method"] == "OPTIONS"
        and header(scope, b"origin") is not None
        and header(scope, b"access-control-request-method") is not None
    )


def preflight_headers(scope):
    """Return the headers of the response to the preflight request in ``scope``."""
    return get_policy().preflight_headers(
        header(scope, b"origin"),
        header(scope, b"access-control-request-method").strip(),
        _joined_header(scope, b"access-control-request-headers"),
    )


def response_headers(scope):
    """Return the CORS headers of the response to the request in ``scope``."""
    return get_policy().response_headers(header(scope, b"origin"))


def _joined_header(scope, name):
    # A list header may arrive split over several lines, which HTTP defines
    # as equal to one line with the values joined by commas.
    values = [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name]
    return ",".join(values) if values else None
