"""
Configuration of the sse app, resolved once into an immutable object.

Every value comes, in rising precedence, from the built-in default, the
``SSE`` dict in the Django settings, the ``OCIS_*`` environment variable and
the ``SSE_*`` environment variable. The keys of ``SSE`` are the field names
in upper case, such as ``"KEEPALIVE_INTERVAL"``. The environment variables
are the ones the oCIS ``sse`` service reads, and an empty one counts as
unset.

oCIS silently keeps the default when it cannot parse a value; this module
raises ``ConfigurationError`` instead, naming the variable, the value and
what is allowed. This is the only module that reads the environment or
``settings.SSE``.
"""

import functools
import os
import re
from dataclasses import dataclass, field, fields
from typing import NamedTuple

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from .exceptions import ConfigurationError

__all__ = ["Address", "SSEConfig", "get_config", "load_config", "reload_config"]


class Address(NamedTuple):
    """A TCP bind address; an empty host means every interface."""

    host: str
    port: int

    def __str__(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def setting(env, default, parse, description, *, secret=False):
    """
    Declare one configuration field.

    ``env`` lists the environment variables from lowest to highest
    precedence, so the service-specific ``SSE_*`` name comes last.
    """
    metadata = {
        "env": tuple(env),
        "parse": parse,
        "description": description,
        "secret": secret,
    }
    return field(default=default, metadata=metadata)


# Parsers. Each takes the raw text and returns the typed value, or raises
# ValueError with a sentence that describes the allowed values.

_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_HELP = (
    "expected a Go duration such as 30s, 1m30s, 1.5h or 500ms "
    "(units ns, us, ms, s, m, h); a bare number is only allowed as 0"
)


def parse_duration(text):
    """Parse a Go duration (``time.ParseDuration``) into seconds; negatives are rejected."""
    text = text.strip()
    if text in ("0", "+0", "-0"):
        return 0.0
    if text.startswith("-"):
        raise ValueError("negative durations are not allowed; use 0s to turn it off")
    body = text[1:] if text.startswith("+") else text
    if not body:
        raise ValueError(_DURATION_HELP)

    seconds = 0.0
    position = 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None:
            raise ValueError(_DURATION_HELP)
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    return seconds


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_bool(text):
    """Parse a boolean the way Go's ``strconv.ParseBool`` does."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected one of 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False")


def parse_list(text):
    """Split a comma-separated list, trimming items and dropping empty ones."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_address(text):
    """Parse ``host:port``, ``[ipv6]:port`` or ``:port`` into an ``Address``."""
    host, separator, port = text.strip().rpartition(":")
    if not separator or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected host:port with a port from 1 to 65535, such as 127.0.0.1:9135")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 host must be in brackets, such as [::1]:9135")
    return Address(host, int(port))


def parse_nats_servers(text):
    """
    Parse a comma-separated list of NATS servers into ``nats://`` URLs.

    Each item is ``host:port`` (as oCIS writes it) or a URL with the
    ``nats``, ``tls``, ``ws`` or ``wss`` scheme.
    """
    servers = []
    for item in parse_list(text):
        scheme, separator, rest = item.partition("://")
        if separator:
            if scheme not in ("nats", "tls", "ws", "wss"):
                raise ValueError(f"unsupported scheme {scheme!r}; use nats://, tls://, ws:// or wss://")
            parse_address(rest.rsplit("@", 1)[-1].rstrip("/"))
            servers.append(item)
        else:
            servers.append(f"nats://{parse_address(item)}")
    if not servers:
        raise ValueError("expected at least one NATS server such as 127.0.0.1:9233")
    return tuple(servers)


def parse_root(text):
    """Normalise an HTTP root path to ``/prefix`` without a trailing slash, or ``""``."""
    text = text.strip()
    if not text.startswith("/"):
        raise ValueError("expected a path that starts with /, such as / or /sse-service")
    if any(character in text for character in "?#") or "//" in text:
        raise ValueError("expected a plain path without //, ? or #")
    return text.rstrip("/")


def parse_string(text):
    return text


@dataclass(frozen=True)
class SSEConfig:
    """The effective configuration; build it with ``load_config``."""

    jwt_secret: str = setting(
        ["OCIS_JWT_SECRET", "SSE_JWT_SECRET"],
        "",
        parse_string,
        "The secret that signs and validates the x-access-token JWTs.",
        secret=True,
    )
    http_addr: Address = setting(
        ["SSE_HTTP_ADDR"],
        Address("127.0.0.1", 9135),
        parse_address,
        "The bind address of the HTTP service.",
    )
    http_root: str = setting(
        ["SSE_HTTP_ROOT"],
        "",
        parse_root,
        "The path prefix below which the stream endpoints are served.",
    )
    debug_addr: Address = setting(
        ["SSE_DEBUG_ADDR"],
        Address("127.0.0.1", 9139),
        parse_address,
        "The bind address of the debug server (health, readiness, metrics).",
    )
    keepalive_interval: float = setting(
        ["SSE_KEEPALIVE_INTERVAL"],
        0.0,
        parse_duration,
        "Seconds between keep-alive comments on each stream; 0 turns them off.",
    )
    events_endpoint: tuple = setting(
        ["OCIS_EVENTS_ENDPOINT", "SSE_EVENTS_ENDPOINT"],
        ("nats://127.0.0.1:9233",),
        parse_nats_servers,
        "The NATS servers of the event system, comma-separated.",
    )
    events_cluster: str = setting(
        ["OCIS_EVENTS_CLUSTER", "SSE_EVENTS_CLUSTER"],
        "ocis-cluster",
        parse_string,
        "The cluster id of the event system. NATS does not need it; it is accepted for oCIS compatibility.",
    )
    events_enable_tls: bool = setting(
        ["OCIS_EVENTS_ENABLE_TLS", "SSE_EVENTS_ENABLE_TLS"],
        False,
        parse_bool,
        "Whether to connect to NATS over TLS.",
    )
    events_tls_insecure: bool = setting(
        ["OCIS_INSECURE", "SSE_EVENTS_TLS_INSECURE"],
        False,
        parse_bool,
        "Whether to skip the verification of the NATS server certificate.",
    )
    events_tls_root_ca_certificate: str = setting(
        ["OCIS_EVENTS_TLS_ROOT_CA_CERTIFICATE", "SSE_EVENTS_TLS_ROOT_CA_CERTIFICATE"],
        "",
        parse_string,
        "The path of a PEM file with the CA that signed the NATS server certificate.",
    )
    events_auth_username: str = setting(
        ["OCIS_EVENTS_AUTH_USERNAME", "SSE_EVENTS_AUTH_USERNAME"],
        "",
        parse_string,
        "The user name for NATS.",
    )
    events_auth_password: str = setting(
        ["OCIS_EVENTS_AUTH_PASSWORD", "SSE_EVENTS_AUTH_PASSWORD"],
        "",
        parse_string,
        "The password for NATS.",
        secret=True,
    )

    # Where each value came from: "default", "settings.SSE" or the name of
    # the environment variable. Not itself a setting.
    sources: dict = field(default_factory=dict, compare=False, repr=False)

    def env_name(self, name):
        """Return the environment variable that an operator sets for field ``name``."""
        return SSE_FIELDS[name].metadata["env"][-1]


SSE_FIELDS = {f.name: f for f in fields(SSEConfig) if "env" in f.metadata}


def _parse(name, raw, origin, config_field):
    parse = config_field.metadata["parse"]
    try:
        return parse(raw)
    except ValueError as error:
        raise ConfigurationError(origin, raw, str(error), secret=config_field.metadata["secret"]) from None


def load_config(environ=None, overrides=None):
    """
    Resolve the configuration from ``overrides`` (the ``SSE`` settings
    dict) and ``environ`` (``os.environ`` by default).

    Raises ``ConfigurationError`` for the first invalid value.
    """
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})

    unknown = sorted(set(overrides) - {name.upper() for name in SSE_FIELDS})
    if unknown:
        allowed = ", ".join(sorted(name.upper() for name in SSE_FIELDS))
        raise ConfigurationError(f"settings.SSE[{unknown[0]!r}]", overrides[unknown[0]], f"unknown key; known keys are {allowed}")

    values = {}
    sources = {}
    for name, config_field in SSE_FIELDS.items():
        value = config_field.default
        source = "default"

        key = name.upper()
        if key in overrides:
            raw = overrides[key]
            # Settings may hold text (parsed like the environment) or an
            # already typed value, which is taken as it is.
            value = _parse(name, raw, f"settings.SSE[{key!r}]", config_field) if isinstance(raw, str) else raw
            source = "settings.SSE"

        for variable in config_field.metadata["env"]:
            raw = environ.get(variable, "")
            if raw:
                value = _parse(name, raw, variable, config_field)
                source = variable

        values[name] = value
        sources[name] = source

    config = SSEConfig(**values, sources=sources)
    if config.http_addr.port == config.debug_addr.port:
        raise ConfigurationError(
            config.sources["debug_addr"] if config.sources["debug_addr"] != "default" else "SSE_DEBUG_ADDR",
            str(config.debug_addr),
            f"the debug server needs a port of its own, but {config.http_addr.port} is also the port of SSE_HTTP_ADDR",
        )
    return config


@functools.lru_cache(maxsize=1)
def get_config():
    """Return the process-wide configuration, resolving it on first use."""
    return load_config(overrides=getattr(settings, "SSE", None))


def reload_config():
    """Forget the cached configuration so that the next ``get_config`` re-reads it."""
    get_config.cache_clear()


@receiver(setting_changed)
def _reload_on_setting_changed(*, setting, **kwargs):
    if setting == "SSE":
        reload_config()
