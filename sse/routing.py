"""
Routing of HTTP requests to the event-stream consumer and the ticket
endpoint.
"""

import functools

from .conf import get_config
from .consumers import EventStreamConsumer
from .ticket_endpoint import TicketConsumer

# /sse is this service's own path; the long one is where the oCIS proxy
# and the ownCloud web client expect the stream.
STREAM_PATHS = ("/sse", "/ocs/v2.php/apps/notifications/api/v1/notifications/sse")
TICKET_PATH = "/sse/ticket"


@functools.lru_cache(maxsize=8)
def stream_paths(http_root):
    """Return the stream paths below ``http_root`` (``""`` or ``/prefix``)."""
    return frozenset(http_root + path for path in STREAM_PATHS)


class EventStreamRouter:
    """
    ASGI application that serves the stream paths below ``SSE_HTTP_ROOT``
    and hands every other request to ``fallback`` (for example Django's
    ASGI handler), or answers it with 404 when there is none.
    """

    def __init__(self, fallback=None):
        self.stream = EventStreamConsumer.as_asgi()
        self.ticket = TicketConsumer.as_asgi()
        self.fallback = fallback

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            http_root = get_config().http_root
            if scope["path"] in stream_paths(http_root):
                return await self.stream(scope, receive, send)
            if scope["path"] == http_root + TICKET_PATH:
                return await self.ticket(scope, receive, send)
        if self.fallback is not None:
            return await self.fallback(scope, receive, send)
        await not_found(scope, receive, send)


async def not_found(scope, receive, send):
    """Send a plain 404 response."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": b"Not Found\n"})
