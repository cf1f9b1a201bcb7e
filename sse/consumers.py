"""
The event-stream consumer: one instance per open ``text/event-stream``.
"""

import asyncio
import json
import logging
import random
import time
import uuid
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from . import __version__, cors, metrics, tracing
from .authentication import authenticate, header
from .conf import get_config
from .exceptions import AuthenticationFailed
from .flow import EXTENSION as FLOW_CONTROL, Outbox
from .groups import BROADCAST_GROUP, user_group
from .history import history
from .replay import replay
from .status import status
from .wire import encode_comment, encode_frame

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

# Control events. They carry no id, so the client keeps the id of the last
# real event for its next Last-Event-ID.
STREAM_RESET = encode_frame("stream-reset", b"")
TOKEN_EXPIRED = encode_frame("token-expired", b"")

# Longer ids are not stream sequences (which fit in 20 digits).
MAX_EVENT_ID_LENGTH = 20

# Seconds a client over the per-user stream limit should wait; by then a
# closed tab has usually released its stream.
RETRY_AFTER_SECONDS = b"30"

# The reconnection delay sent to every stream when the server shuts down,
# drawn per stream, so that the clients of a stopping process do not all
# reconnect in the same second.
SHUTDOWN_RETRY_MILLISECONDS = (1000, 10000)

# With keep-alives on, a client that has read nothing for this many
# intervals is taken to be gone (a half-open connection) and dropped.
STALLED_KEEPALIVE_INTERVALS = 3


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
        self.expiry_timer = None
        self.expiry_task = None
        self.outbox = None
        self.flow = None
        self.span = None
        # (stream creation time, stream sequence) of the last event written,
        # to skip the copies that a redelivery after a bridge failure sends.
        self.last_event = ("", 0)
        self._request_id = None
        self.serving_task = None
        self.receiving = False
        self.left = False

    async def __call__(self, scope, receive, send):
        self.scope = scope
        self.base_send = send
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        if self.channel_layer is None:
            raise ImproperlyConfigured("Event streams need a channel layer; settings.CHANNEL_LAYERS has no 'default'.")
        self.channel_name = await self.channel_layer.new_channel()
        try:
            await self.serve(receive)
        except StopConsumer:
            pass
        finally:
            # Also runs when the server cancels the consumer at shutdown,
            # when http.disconnect never arrives.
            await self.end_stream()

    async def serve(self, receive):
        """
        Handle the request, then write the channel's messages until the
        client disconnects or a handler raises ``StopConsumer``.

        channels' ``await_many_dispatch`` waits on the request and the
        channel together and starts a new task for every message it
        receives. With thousands of streams and a broadcast, that is
        thousands of tasks per event. Here the request is read first,
        because no event can arrive before ``handle()`` joined the groups.
        Then this task reads the channel until the client leaves. The
        server's flow-control extension reports that; without it, a
        second task waits for ``http.disconnect``.
        """
        while not self.streaming:
            await self.dispatch(await receive())

        self.serving_task = asyncio.current_task()
        watcher = None
        if self.flow is not None:
            self.flow.when_finished(self.client_left)
        else:
            watcher = asyncio.ensure_future(self.watch_disconnect(receive))
        try:
            while not self.left:
                self.receiving = True
                try:
                    message = await self.channel_layer.receive(self.channel_name)
                finally:
                    self.receiving = False
                if message["type"] == "sse.event":
                    await self.sse_event(message)
                else:
                    await self.dispatch(message)
        except asyncio.CancelledError:
            if not self.left:
                raise
            # client_left() cancelled the wait for the next message.
            self.serving_task.uncancel()
        finally:
            self.serving_task = None
            if watcher is not None:
                watcher.cancel()

    def client_left(self):
        """Stop serving because the client has gone; safe to call at any time, and more than once."""
        self.left = True
        # Cancelled only while it waits for a message, so that no
        # cancellation reaches a handler or the cleanup after the loop.
        if self.receiving and self.serving_task is not None:
            self.serving_task.cancel()

    async def watch_disconnect(self, receive):
        """Wait for ``http.disconnect``, then call ``client_left()``."""
        while (await receive())["type"] != "http.disconnect":
            pass
        self.client_left()

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
        if cors.is_preflight(self.scope):
            await self.send_response(204, b"", headers=cors.preflight_headers(self.scope))
            return

        if self.scope["method"] not in ("GET", "HEAD"):
            await self.send_response(405, b"", headers=[(b"allow", b"GET, HEAD"), (b"content-length", b"0")])
            return

        config = get_config()
        try:
            identity = authenticate(self.scope, config.jwt_secret)
        except AuthenticationFailed as error:
            await self.reject(error)
            return
        user_id = identity.user_id

        if self.scope["method"] == "HEAD":
            await self.send_response(200, b"", headers=[*STREAM_HEADERS, *cors.response_headers(self.scope)])
            return

        limit = config.max_connections_per_user
        if limit and status.streams_of(user_id) >= limit:
            await self.reject_too_many(limit)
            return

        await self.start_stream(identity, config)

    async def reject(self, error):
        logger.debug("Rejected stream request", extra={"request_id": self.request_id(), "code": error.code})
        challenge = b"Bearer" if error.code == "not_authenticated" else b'Bearer error="invalid_token"'
        await self.send_error(401, error.code, error.detail, [(b"www-authenticate", challenge)])

    async def reject_too_many(self, limit):
        logger.info("Rejected a stream beyond SSE_MAX_CONNECTIONS_PER_USER=%d", limit, extra={"request_id": self.request_id()})
        detail = f"This user already has {limit} open streams."
        await self.send_error(429, "too_many_streams", detail, [(b"retry-after", RETRY_AFTER_SECONDS)])

    async def send_error(self, status, code, detail, headers):
        """Send a JSON error response that a page on an allowed origin can read."""
        body = json.dumps({"code": code, "detail": detail}).encode()
        await self.send_response(
            status,
            body,
            headers=[
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
                *cors.response_headers(self.scope),
            ],
        )

    async def start_stream(self, identity, config):
        # Counted before the first await, so that concurrent requests of one
        # user cannot all pass the per-user limit.
        user_id = self.user_id = identity.user_id
        self.streaming = True
        status.stream_opened(user_id)
        metrics.CONNECTIONS_ACTIVE.inc()

        self.groups = (user_group(user_id), BROADCAST_GROUP)
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)
        status.channel_opened(self.channel_name)
        metrics.CONNECTIONS_TOTAL.inc()
        logger.debug("Stream opened", extra={"request_id": self.request_id(), "user_id": user_id})

        flow_control = self.scope.get("extensions", {}).get(FLOW_CONTROL)
        self.flow = flow_control() if flow_control is not None else None
        self.outbox = Outbox(self.write_event, self.flow, config.max_buffered_events, config.max_buffered_bytes)

        await self.send_headers(status=200, headers=[*STREAM_HEADERS, *cors.response_headers(self.scope)])
        await self.send_body(OPENING, more_body=True)
        await self.replay_missed_events()

        if config.keepalive_interval > 0:
            self.keepalive_task = asyncio.create_task(self.send_keepalives(config.keepalive_interval))
            if self.flow is not None:
                self.flow.drop_if_unacknowledged(STALLED_KEEPALIVE_INTERVALS * config.keepalive_interval)
        if identity.expires_at is not None:
            # A timer rather than a sleeping task: it costs a fraction of
            # the memory, and most streams hold one for hours.
            delay = max(identity.expires_at - time.time(), 0.0)
            self.expiry_timer = asyncio.get_running_loop().call_later(delay, self.token_expired)

    async def replay_missed_events(self):
        """
        Write the events after the client's ``Last-Event-ID``, from the
        history of this process or else from the JetStream stream, or a
        ``stream-reset`` event when neither can tell what the client missed.

        The groups were joined before, so live events that arrive meanwhile
        wait in the channel; the ones also replayed here are skipped as
        duplicates.
        """
        last_event_id = requested_last_event_id(self.scope)
        if last_event_id is None:
            return
        missed = None
        if last_event_id >= 0:
            missed = history.since(last_event_id, self.groups)
            if missed is None:
                missed = await replay.since(last_event_id, self.groups)
        if missed is None:
            logger.debug("Stream reset for Last-Event-ID", extra={"request_id": self.request_id(), "user_id": self.user_id})
            await self.send_body(STREAM_RESET, more_body=True)
            return
        for message in missed:
            # A replayed event's age is no delivery latency.
            await self.sse_event({**message, "published": None})

    def token_expired(self):
        """Ask the consumer to end the stream, now that its token is no longer accepted."""
        self.expiry_timer = None
        self.expiry_task = asyncio.ensure_future(self.notify_self("sse.token_expired"))

    async def notify_self(self, message_type):
        """
        Send a message to this consumer's own channel, so that it is handled
        in order with the events; on failure, end the stream at once.
        """
        try:
            await self.channel_layer.send(self.channel_name, {"type": message_type})
        except Exception as error:
            logger.warning("Could not deliver %s to a stream, closing it: %s", message_type, error)
            if self.flow is not None:
                self.flow.abort()

    async def send_keepalives(self, interval):
        """
        Write a comment every ``interval`` seconds so that idle proxies keep
        the stream open, and drop the stream when its client has read
        nothing for several intervals.
        """
        while True:
            await asyncio.sleep(interval)
            if self.outbox.stalled_for() >= STALLED_KEEPALIVE_INTERVALS * interval:
                await self.notify_self("sse.stalled")
                return
            if not self.outbox.waiting and not (self.flow and self.flow.paused):
                await self.send_body(KEEPALIVE, more_body=True)

    async def sse_event(self, message):
        """
        Write one event; ``message["frame"]`` contains its encoded bytes and
        ``message["published"]`` the epoch seconds of its envelope timestamp,
        if it had one.
        """
        if "id" in message:
            event = (message.get("stream", ""), message["id"])
            if event[0] == self.last_event[0] and event[1] <= self.last_event[1]:
                metrics.EVENTS_DROPPED.labels(reason="duplicate").inc()
                return
            self.last_event = event

        if not await self.outbox.put(message["frame"], message.get("published"), message.get("trace")):
            await self.close_slow_stream(self.outbox.discard(), "could not keep up")

    async def write_event(self, frame, published, trace):
        span = tracing.start_send_span(trace) if trace else None
        if self.flow is not None:
            self.flow.write(frame)
        else:
            await self.send_body(frame, more_body=True)
        metrics.DELIVERIES.inc()
        if span is not None:
            span.end()

        if published is not None:
            # Clocks of the publisher and this host may disagree slightly.
            metrics.DELIVERIES.observe(max(time.time() - published, 0.0))

    async def sse_overflow(self, message):
        """End a stream that fell so far behind that the channel layer discarded events for it."""
        await self.close_slow_stream(message["dropped"] + self.outbox.discard(), "fell behind the channel layer")

    async def sse_stalled(self, message):
        """End a stream whose client has stopped reading (sent by the keep-alive timer)."""
        await self.close_slow_stream(self.outbox.discard(), "stopped reading")

    async def close_slow_stream(self, dropped, reason):
        metrics.EVENTS_DROPPED.labels(reason="slow_client").inc(dropped)
        logger.warning(
            "Closed a stream whose client %s; %d events were dropped",
            reason,
            dropped,
            extra={"request_id": self.request_id(), "user_id": self.user_id, "dropped": dropped},
        )
        if self.flow is not None:
            # The client does not read, so a polite end of the response
            # would sit in the send buffer; drop the connection instead.
            self.flow.abort()
        else:
            await self.send_body(b"", more_body=False)
        raise StopConsumer()

    async def sse_token_expired(self, message):
        """End the stream when its token expires, so that the client renews the token and reconnects."""
        logger.debug("Token expired", extra={"request_id": self.request_id(), "user_id": self.user_id})
        self.outbox.discard()
        if self.flow is not None:
            self.flow.release()
        await self.send_body(TOKEN_EXPIRED, more_body=False)
        raise StopConsumer()

    async def sse_shutdown(self, message):
        """End the stream because the server stops, telling the client when to come back."""
        retry = random.randint(*SHUTDOWN_RETRY_MILLISECONDS)
        self.outbox.discard()
        if self.flow is not None:
            self.flow.release()
        await self.send_body(b"retry: %d\n\n" % retry, more_body=False)
        raise StopConsumer()

    async def disconnect(self):
        await self.end_stream()

    async def http_disconnect(self, message):
        # Unlike AsyncHttpConsumer's, without closing database connections
        # in a thread: streams do not use the database.
        await self.end_stream()
        raise StopConsumer()

    async def end_stream(self):
        """Leave the groups and stop the keep-alive timer; safe to call more than once."""
        for task in (self.keepalive_task, self.expiry_task):
            if task is not None:
                task.cancel()
        self.keepalive_task = self.expiry_task = None
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()
            self.expiry_timer = None
        if self.outbox is not None:
            self.outbox.discard()
        self.end_span()
        if not self.streaming:
            return

        # Counted first: leaving the groups fails while Redis is down, and a
        # stream that stays counted would lock its user out at the limit.
        self.streaming = False
        status.channel_closed(self.channel_name)
        status.stream_closed(self.user_id)
        metrics.CONNECTIONS_ACTIVE.dec()
        for group in self.groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception as error:
                logger.warning("Could not leave group %s: %s", group, error, extra={"request_id": self.request_id()})
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


def requested_last_event_id(scope):
    """
    Return the ``Last-Event-ID`` of the request (the header, else the
    ``lastEventId`` query parameter for clients that cannot set headers):
    ``None`` when absent, -1 when it is no event id of this service.
    """
    value = header(scope, b"last-event-id")
    if value is None:
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("lastEventId")
        value = values[0] if values else None
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_EVENT_ID_LENGTH:
        return -1
    return int(value)
