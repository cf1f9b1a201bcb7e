"""
The event-stream consumer: one instance per open ``text/event-stream``.
"""

import asyncio
import json
import logging
import time
import uuid

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer

from . import __version__, metrics, tracing
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

# oCIS adds this header, with the service's version, to every response of
# the service.
VERSION_HEADER = (b"x-sse-version", __version__.encode())

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
        self.span = None
        self._request_id = None

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
        if tracing.enabled:
            self.span = tracing.start_stream_span(self.scope)
        await self.handle(b"")
        if not self.streaming:
            self.end_span()
            raise StopConsumer()

    async def send_headers(self, *, status=200, headers=None):
        """Send the response head with the version and request id headers added."""
        if self.span is not None:
            self.span.set_attribute("http.response.status_code", status)
        if isinstance(headers, dict):
            headers = headers.items()
        headers = [
            *(headers or ()),
            VERSION_HEADER,
            # Echoed so that a client can quote it when it reports a problem.
            (b"x-request-id", self.request_id().encode("latin-1")),
        ]
        await super().send_headers(status=status, headers=headers)

    async def handle(self, body):
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
            await self.send_response(200, b"", headers=STREAM_HEADERS)
            return

        await self.start_stream(user_id, config.keepalive_interval)

    async def reject(self, error):
        logger.debug("Rejected stream request", extra={"request_id": self.request_id(), "code": error.code})
        challenge = b"Bearer" if error.code == "not_authenticated" else b'Bearer error="invalid_token"'
        body = json.dumps({"code": error.code, "detail": error.detail}).encode()
        await self.send_response(
            401,
            body,
            headers=[
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", challenge),
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
        logger.debug("Stream opened", extra={"request_id": self.request_id(), "user_id": user_id})

        await self.send_headers(status=200, headers=STREAM_HEADERS)
        await self.send_body(OPENING, more_body=True)

        if keepalive_interval > 0:
            self.keepalive_task = asyncio.create_task(self.send_keepalives(keepalive_interval))

    async def send_keepalives(self, interval):
        """Write a comment every ``interval`` seconds so that idle proxies keep the stream open."""
        while True:
            await asyncio.sleep(interval)
            await self.send_body(KEEPALIVE, more_body=True)

    async def sse_event(self, message):
        """
        Write one event; ``message["frame"]`` contains its encoded bytes and
        ``message["published"]`` the epoch seconds of its envelope timestamp,
        if it had one.
        """
        trace = message.get("trace")
        span = tracing.start_send_span(trace) if trace else None
        await self.send_body(message["frame"], more_body=True)
        metrics.EVENTS_SENT.inc()
        if span is not None:
            span.end()

        published = message.get("published")
        if published is not None:
            # Clocks of the publisher and this host may disagree slightly.
            metrics.DELIVERY_LATENCY.observe(max(time.time() - published, 0.0))

    async def sse_overflow(self, message):
        """End a stream that fell so far behind that the channel layer discarded events for it."""
        metrics.EVENTS_DROPPED.labels(reason="slow_client").inc(message["dropped"])
        logger.warning(
            "Closed a stream that fell behind; %d events were discarded",
            message["dropped"],
            extra={"request_id": self.request_id(), "user_id": self.user_id, "dropped": message["dropped"]},
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
        self.end_span()
        if not self.streaming:
            return

        self.streaming = False
        for group in self.groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        status.stream_closed(self.user_id)
        metrics.CONNECTIONS_ACTIVE.dec()
        logger.debug("Stream closed", extra={"request_id": self.request_id(), "user_id": self.user_id})

    def end_span(self):
        if self.span is not None:
            self.span.end()
            self.span = None

    def request_id(self):
        """
        Return the id of this request for log lines and the response: the
        client's X-Request-ID cut to 128 printable characters, or a new UUID.
        """
        if self._request_id is None:
            value = header(self.scope, b"x-request-id") or ""
            value = "".join(character for character in value[:128] if character.isprintable()).strip()
            self._request_id = value or str(uuid.uuid4())
        return self._request_id
