"""
The event-stream consumer: one instance per open ``text/event-stream``.
"""

import asyncio
import json
import logging

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer

from . import cors, metrics
from .authentication import authenticate, header
from .conf import get_config
from .exceptions import AuthenticationFailed
from .groups import BROADCAST_GROUP, user_group
from .status import status
from .wire import encode_comment

logger = logging.getLogger(__name__)

STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # nginx buffers proxied responses by default, which would hold events
    # back until its buffer fills.
    (b"x-accel-buffering", b"no"),
]

# The first bytes of every stream. Sending something at once makes the
# server flush the headers, so proxies and clients see the stream open.
OPENING = encode_comment("stream opened")
KEEPALIVE = encode_comment("keepalive")


class EventStreamConsumer(AsyncHttpConsumer):
    """
    Stream the events of the authenticated user.

    The consumer joins the channel-layer group of its user and the group
    that receives broadcasts, then writes every ``sse.event`` message that
    reaches it. Unlike ``AsyncHttpConsumer``, it keeps running after
    ``handle()`` returns, until the client disconnects or the server
    ends the stream.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.groups = ()
        self.user_id = None
        self.streaming = False
        self.keepalive_task = None

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Also runs when the server cancels the consumer at shutdown,
            # when http.disconnect never arrives.
            await self.end_stream()

    async def dispatch(self, message):
        # AsyncConsumer.dispatch closes stale database connections in a
        # thread before every message. Streaming never touches the
        # database, and that thread hop would cost more than writing the
        # event itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']!r}")
        await handler(message)

    async def http_request(self, message):
        if message.get("more_body"):
            return
        await self.handle(b"")
        if not self.streaming:
            raise StopConsumer()

    async def handle(self, body):
        if cors.is_preflight(self.scope):
            await self.send_response(204, b"", headers=cors.preflight_headers(self.scope))
            return

        if self.scope["method"] not in ("GET", "HEAD"):
            await self.send_response(405, b"", headers=[(b"allow", b"GET, HEAD"), (b"content-length", b"0")])
            return

        config = get_config()
        try:
            user_id = authenticate(self.scope, config.jwt_secret)
        except AuthenticationFailed as error:
            await self.reject(error)
            return

        if self.scope["method"] == "HEAD":
            await self.send_response(200, b"", headers=[*STREAM_HEADERS, *cors.response_headers(self.scope)])
            return

        await self.start_stream(user_id, config.keepalive_interval)

    async def reject(self, error):
        logger.debug("Rejected stream request %s: %s", self.request_id(), error.code)
        challenge = b"Bearer" if error.code == "not_authenticated" else b'Bearer error="invalid_token"'
        body = json.dumps({"code": error.code, "detail": error.detail}).encode()
        await self.send_response(
            401,
            body,
            headers=[
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", challenge),
                # Lets a page on an allowed origin read why it was rejected.
                *cors.response_headers(self.scope),
            ],
        )

    async def start_stream(self, user_id, keepalive_interval):
        self.user_id = user_id
        self.groups = (user_group(user_id), BROADCAST_GROUP)
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.streaming = True
        status.stream_opened(user_id)
        metrics.CONNECTIONS_ACTIVE.inc()
        metrics.CONNECTIONS_TOTAL.inc()
        logger.debug("Stream %s opened for a user", self.request_id())

        await self.send_headers(status=200, headers=[*STREAM_HEADERS, *cors.response_headers(self.scope)])
        await self.send_body(OPENING, more_body=True)

        if keepalive_interval > 0:
            self.keepalive_task = asyncio.create_task(self.send_keepalives(keepalive_interval))

    async def send_keepalives(self, interval):
        """Write a comment every ``interval`` seconds so that idle proxies keep the stream open."""
        while True:
            await asyncio.sleep(interval)
            await self.send_body(KEEPALIVE, more_body=True)

    async def sse_event(self, message):
        """Write one event; ``message["frame"]`` contains its encoded bytes."""
        await self.send_body(message["frame"], more_body=True)
        metrics.EVENTS_SENT.inc()

    async def sse_overflow(self, message):
        """End a stream that fell so far behind that the channel layer discarded events for it."""
        metrics.EVENTS_DROPPED.labels(reason="slow_client").inc(message["dropped"])
        logger.warning(
            "Stream %s fell behind and was closed; %d events were discarded",
            self.request_id(),
            message["dropped"],
        )
        await self.send_body(b"", more_body=False)
        raise StopConsumer()

    async def disconnect(self):
        await self.end_stream()

    async def end_stream(self):
        """Leave the groups and stop the keep-alive timer; safe to call more than once."""
        if self.keepalive_task is not None:
            self.keepalive_task.cancel()
            self.keepalive_task = None
        if not self.streaming:
            return

        self.streaming = False
        for group in self.groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        status.stream_closed(self.user_id)
        metrics.CONNECTIONS_ACTIVE.dec()
        logger.debug("Stream %s closed", self.request_id())

    def request_id(self):
        """Return the client's X-Request-ID for log lines, cut to 128 printable characters."""
        value = header(self.scope, b"x-request-id") or "-"
        return "".join(character for character in value[:128] if character.isprintable())
