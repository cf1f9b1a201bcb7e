"""
The debug server: health, readiness and Prometheus metrics.
"""

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from .routing import not_found

TEXT = b"text/plain; charset=utf-8"


class DebugApplication:
    """
    ASGI application for ``SSE_DEBUG_ADDR``.

    * ``/healthz``: 200 while the process serves HTTP.
    * ``/readyz``: 200 once every readiness check passes, else 503 naming
      the failing checks.
    * ``/metrics``: the Prometheus text format.

    ``readiness_checks`` maps a check name to a callable that returns
    whether that part of the service is ready.
    """

    def __init__(self, readiness_checks=None, registry=REGISTRY):
        self.readiness_checks = dict(readiness_checks or {})
        self.registry = registry

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/healthz":
            await respond(send, 200, TEXT, b"OK\n")
        elif path == "/readyz":
            await self.readyz(send)
        elif path == "/metrics":
            await respond(send, 200, CONTENT_TYPE_LATEST.encode(), generate_latest(self.registry))
        else:
            await not_found(scope, receive, send)

    async def readyz(self, send):
        failing = [name for name, check in self.readiness_checks.items() if not check()]
        if failing:
            body = "".join(f"{name}: not ready\n" for name in failing).encode()
            await respond(send, 503, TEXT, body)
        else:
            await respond(send, 200, TEXT, b"OK\n")


async def respond(send, status, content_type, body):
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"cache-control", b"no-store")],
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
