"""
Parsers of configuration values.

Each takes the text of an environment variable or setting and returns the
typed value, or raises ``ValueError`` with a sentence that describes the
allowed values. The formats follow the Go parsers that oCIS uses.
"""

import os
import re
from typing import NamedTuple


class Address(NamedTuple):
    """A TCP bind address; an empty host means every interface."""

    host: str
    port: int

    def __str__(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def all_interfaces(self):
        """Whether the host is empty, ``0.0.0.0`` or ``::``, which all bind every interface."""
        return self.host in ("", "0.0.0.0", "::")


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


def parse_origins(text):
    """Parse a comma-separated list of CORS origins, each with at most one ``*``."""
    origins = parse_list(text)
    for origin in origins:
        if origin.count("*") > 1:
            raise ValueError(
                f"the origin {origin!r} has more than one *; use * alone to allow every origin, "
                "or one * as a wildcard such as https://*.example.com"
            )
    return origins


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



LOG_LEVELS = ("panic", "fatal", "error", "warn", "info", "debug", "trace")


def parse_log_level(text):
    """Parse a zerolog level name, case-insensitively."""
    level = text.strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return level


TRACING_TYPES = ("", "jaeger", "otlp")


def parse_tracing_type(text):
    """Parse a tracing exporter type; the empty string means jaeger, as in oCIS."""
    tracing_type = text.strip().lower()
    if tracing_type not in TRACING_TYPES:
        raise ValueError("expected jaeger, otlp or an empty value (which means jaeger)")
    return tracing_type or "jaeger"


# oCIS also accepts natsjs and nats-js as names of its NATS key-value registry.
REGISTRY_ALIASES = ("nats-js-kv", "natsjs", "nats-js")


def parse_registry(text):
    """Parse a service registry type into ``"nats-js-kv"``, or ``""`` for none."""
    registry = text.strip().lower()
    if registry in ("", "none"):
        return ""
    if registry in REGISTRY_ALIASES:
        return "nats-js-kv"
    raise ValueError(
        "expected nats-js-kv (or its aliases natsjs and nats-js) to register in the NATS key-value registry, "
        "or none to not register; other go-micro registries such as memory or kubernetes are not supported"
    )


def parse_positive_duration(text):
    """Parse a Go duration that must be longer than zero."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("expected a Go duration longer than zero, such as 30s")
    return seconds


def parse_readable_file(text):
    """Accept the path of a file that this process can read."""
    path = text.strip()
    if not os.path.isfile(path):
        raise ValueError("expected the path of an existing file")
    if not os.access(path, os.R_OK):
        raise ValueError("the file is not readable by this process")
    return path


_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
}


def parse_size(text):
    """Parse a size in bytes such as ``1048576``, ``512KiB`` or ``1MiB``."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError("expected a size in bytes such as 1048576, 512KiB or 1MiB")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]


def parse_count(text):
    """Parse a whole number of 0 or more."""
    if not text.strip().isdigit():
        raise ValueError("expected a whole number of 0 or more")
    return int(text)


def parse_channel_layer_url(text):
    """Accept a ``redis://``, ``rediss://`` or ``unix://`` URL of a Redis server."""
    url = text.strip()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a Redis URL such as redis://127.0.0.1:6379/0")
    return url


def parse_string(text):
    return text


_URL_PASSWORD = re.compile(r"(?P<prefix>[a-z][a-z0-9+.-]*://[^/@:\s]*:)[^/@\s]*@", re.IGNORECASE)


def redact_url(text):
    """Replace the password in the user part of every URL in ``text`` with ``***``."""
    return _URL_PASSWORD.sub(lambda match: match.group("prefix") + "***@", text)
