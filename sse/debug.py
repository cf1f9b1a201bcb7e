"""
The debug server on ``SSE_DEBUG_ADDR``.

* ``/healthz``: 200 while the stream server listens.
* ``/readyz``: 200 once every readiness check passes, else 503 naming the
  failing checks.
* ``/metrics``: the Prometheus text format of the default registry, which
  also contains the django-prometheus metrics.
* ``/config``: the effective configuration as JSON, secrets masked.
* ``/debug/pprof/``: CPU profiles and task dumps, with ``SSE_DEBUG_PPROF``.
* ``/debug/tracez``: in-flight and recent spans, with ``SSE_DEBUG_ZPAGES``.

With ``SSE_DEBUG_TOKEN`` set, ``/metrics``, ``/config``, the profiling
endpoints and the span page require ``Authorization: Bearer <token>``.
"""

import hmac
import json

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from . import profiling, tracing
from .authentication import header
from .conf import SSE_FIELDS
from .parsing import redact_url
from .routing import not_found

TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json"
MASK = "********"


def describe_config(config):
    """Return the configuration as a JSON-ready dict: value, source, variables and default per field."""
    described = {}
    for name, config_field in SSE_FIELDS.items():
        value = getattr(config, name)
        if config_field.metadata["secret"]:
            value = MASK if value else ""
        elif isinstance(value, tuple) and hasattr(value, "_fields"):
            value = str(value)
        elif isinstance(value, tuple):
            value = [redact_url(item) if isinstance(item, str) else item for item in value]
        elif isinstance(value, str):
            value = redact_url(value)
        described[name] = {
            "value": value,
            "source": config.sources.get(name, "default"),
            "env": list(config_field.metadata["env"]),
            "default": "" if config_field.metadata["secret"] else config_field.metadata["default"],
        }
    return described


class DebugApplication:
    """
    ASGI application of the debug server.

    ``health_checks`` and ``readiness_checks`` map a check name to a
    callable that returns whether that part of the service is healthy or
    ready.
    """

    def __init__(self, config, health_checks=None, readiness_checks=None, registry=REGISTRY):
        self.config = config
        self.health_checks = dict(health_checks or {})
        self.readiness_checks = dict(readiness_checks or {})
        self.registry = registry
        self.token = config.debug_token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        path = scope["path"]

        if path == "/healthz":
            return await self.check(send, self.health_checks)
        if path == "/readyz":
            return await self.check(send, self.readiness_checks)

        protected = path in ("/metrics", "/config", "/debug/tracez") or path.startswith("/debug/pprof/")
        if protected and not self.authorized(scope):
            return await respond(send, 401, JSON, b'{"error": "invalid or missing token"}', [(b"www-authenticate", b"Bearer")])

        if path == "/metrics":
            return await respond(send, 200, CONTENT_TYPE_LATEST.encode(), generate_latest(self.registry))
        if path == "/config":
            body = json.dumps(describe_config(self.config), indent=2).encode()
            return await respond(send, 200, JSON, body)
        if path.startswith("/debug/pprof/") and self.config.debug_pprof:
            status, content_type, body = await profiling.handle(path, scope.get("query_string", b""))
            return await respond(send, status, content_type, body)
        if path == "/debug/tracez" and self.config.debug_zpages and tracing.recorder is not None:
            in_flight, recent = tracing.recorder.snapshot()
            body = json.dumps({"in_flight": in_flight, "recent": recent}, indent=2, default=str).encode()
            return await respond(send, 200, JSON, body)
        await not_found(scope, receive, send)

    def authorized(self, scope):
        if not self.token:
            return True
        # Compare in constant time so the token cannot be guessed byte by byte.
        presented = (header(scope, b"authorization") or "").encode("latin-1")
        return hmac.compare_digest(presented, b"Bearer " + self.token)

    async def check(self, send, checks):
        failing = [name for name, check in checks.items() if not check()]
        if failing:
            body = "".join(f"{name}: not ready\n" for name in failing).encode()
            await respond(send, 503, TEXT, body)
        else:
            await respond(send, 200, TEXT, b"OK\n")


async def respond(send, status, content_type, body, headers=()):
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class PortRouter:
    """Send requests that arrive on ``debug_port`` to ``debug``, all others to ``main``."""

    def __init__(self, main, debug, debug_port):
        self.main = main
        self.debug = debug
        self.debug_port = debug_port

    async def __call__(self, scope, receive, send):
        server = scope.get("server")
        if server is not None and server[1] == self.debug_port:
            return await self.debug(scope, receive, send)
        return await self.main(scope, receive, send)
