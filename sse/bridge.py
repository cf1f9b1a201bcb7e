"""
The bridge from NATS JetStream to the channel layer.

It consumes the oCIS event stream, keeps the ``SendSSE`` events and sends
each of them, encoded once, into the channel-layer group of every user it
addresses.
"""

import asyncio
import logging
import time
import uuid

import nats
import nats.errors
import nats.js.errors
from channels.layers import get_channel_layer
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from . import metrics, tracing
from .exceptions import MalformedEvent
from .groups import BROADCAST_GROUP, user_group
from .history import history
from .leadership import REFRESH_SECONDS, Leadership
from .nats_options import nats_connect_options
from .pull import PullConsumer
from .wire import BROADCAST_USER_ID, decode_event, encode_frame, timestamp_seconds

logger = logging.getLogger(__name__)

# oCIS publishes every event on this subject, into a stream of the same name.
STREAM = "main-queue"
SUBJECT = "main-queue"

# Messages per pull request, and the most handed to the channel layer in
# one go. It must stay well below the layer's per-channel capacity, because
# a batch is handed to the layer without yielding to the stream consumers
# in between.
FETCH_BATCH = 256
FETCH_TIMEOUT_SECONDS = 2.0

# Messages delivered and not yet acknowledged, at most: the batch being
# handled plus what PullConsumer buffers and requests ahead of it, which
# stays below three more batches.
MAX_ACK_PENDING = 4 * FETCH_BATCH

# JetStream deletes our consumer this long after the last pull request, so
# a process that dies without cleaning up leaves nothing behind for long.
CONSUMER_INACTIVE_THRESHOLD_SECONDS = 30.0

RETRY_MIN_SECONDS = 0.5
RETRY_MAX_SECONDS = 15.0

# While NATS is unreachable, nats-py reports every failed attempt; the same
# error is logged again only after this long, with the number suppressed.
REPEATED_ERROR_LOG_SECONDS = 30.0


DELIVERED = metrics.EVENTS_RECEIVED.labels(result="delivered")


def target_groups(user_ids):
    """Return the groups an event for ``user_ids`` goes to; ``all`` means every stream, once."""
    if BROADCAST_USER_ID in user_ids:
        return [BROADCAST_GROUP]
    return [user_group(user_id) for user_id in user_ids]


class Bridge:
    """
    Consume SendSSE events from JetStream and send them into the channel layer.

    By default each bridge creates its own ephemeral pull consumer, named
    ``sse-<uuid>`` like the one oCIS creates, that receives only events
    published after it started, and recreates it where it left off if
    JetStream loses it. With ``shared=True`` (a channel layer that all
    processes share) the bridges share one durable consumer,
    ``SSE_CONSUMER_NAME``, so each event is sent into the layer once. Only
    the elected leader pulls from it (see ``sse.leadership``), which keeps
    the events in order. A new leader first rewinds the consumer to its
    acknowledgement floor. So the events its predecessor fetched but did
    not acknowledge come again, in order, and the streams skip the copies
    they already wrote.

    Events are acknowledged after the whole batch was handed to the
    channel layer. ``run()`` returns after ``stop()``.
    """

    def __init__(self, config, channel_layer=None, *, shared=False):
        self.config = config
        self.channel_layer = channel_layer or get_channel_layer()
        self.shared = shared
        self.consumer_name = config.consumer_name if shared else f"sse-{uuid.uuid4()}"
        self.node_id = str(uuid.uuid4())
        # When the stream was created. A reset stream numbers from 1 again,
        # and its creation time distinguishes its ids from the old ones.
        self.stream_created = ""
        self.connection = None
        self.subscription = None
        self.leadership = None
        self.ready = False
        # The stream sequence of the last message handled, from which a lost
        # consumer is recreated.
        self.last_sequence = None
        self._stopping = asyncio.Event()
        self._pulled_since_failure = False
        self._last_error = None
        self._last_error_logged_at = 0.0
        self._suppressed_errors = 0

    @property
    def ready(self):
        """Whether the bridge is connected and its consumer responds to pull requests."""
        return self._ready

    @ready.setter
    def ready(self, value):
        self._ready = value
        metrics.NATS_CONNECTED.set(1 if value else 0)

    async def run(self):
        """Connect, then move events until ``stop()`` is called; retries every failure with backoff."""
        delay = RETRY_MIN_SECONDS
        while not self._stopping.is_set():
            self._pulled_since_failure = False
            try:
                await self._connect()
                await self._subscribe()
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.ready = False
                if self._stopping.is_set():
                    break
                # The backoff starts over only once a pull succeeded again,
                # so a failure that recurs right after reconnecting backs off.
                if self._pulled_since_failure:
                    delay = RETRY_MIN_SECONDS
                reason = str(error) or type(error).__name__
                logger.warning("Moving events failed, retrying in %.1fs: %s", delay, reason)
                await self._sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def stop(self):
        """Stop consuming, delete the JetStream consumer and close the connection."""
        self._stopping.set()
        self.ready = False
        connection, self.connection = self.connection, None
        if connection is None or connection.is_closed:
            return
        if self.leadership is not None:
            try:
                await self.leadership.release()
            except Exception as error:
                logger.warning("Could not give up the lead of consumer %s: %s", self.consumer_name, error)
        if self.subscription is not None and not self.shared:
            try:
                await connection.jetstream().delete_consumer(STREAM, self.consumer_name)
            except Exception as error:
                logger.warning("Could not delete NATS consumer %s: %s", self.consumer_name, error)
        await connection.close()
        logger.info("NATS connection closed")

    async def _unsubscribe(self):
        """Drop the previous pull subscription, so that retries do not pile them up."""
        subscription, self.subscription = self.subscription, None
        if subscription is None:
            return
        try:
            await subscription.stop()
        except Exception as error:
            logger.debug("Dropping a pull subscription failed: %s", error)

    async def _sleep(self, seconds):
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _connect(self):
        if self.connection is not None and self.connection.is_connected:
            return
        if self.connection is not None:
            await self.connection.close()
        self.connection = await nats.connect(
            **nats_connect_options(self.config),
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        logger.info("Connected to NATS at %s:%s", self.connection.connected_url.hostname, self.connection.connected_url.port)

    async def _subscribe(self):
        """Create the stream if it is missing, then (re)create this process's consumer."""
        js = self.connection.jetstream()
        try:
            stream = await js.stream_info(STREAM)
        except nats.js.errors.NotFoundError:
            stream = await js.add_stream(name=STREAM, subjects=[SUBJECT])
            logger.info("Created JetStream stream %s", STREAM)

        self.stream_created = str(stream.created)
        if self.shared:
            # The leader sets up the consumer when it takes over.
            self.leadership = Leadership(js, self.consumer_name, self.node_id)
            await self._unsubscribe()
            self.ready = True
            return

        try:
            await js.consumer_info(STREAM, self.consumer_name)
        except nats.js.errors.NotFoundError:
            try:
                await js.add_consumer(STREAM, config=self._consumer_config(stream.state.last_seq))
            except nats.js.errors.BadRequestError:
                # Another bridge created the shared consumer first.
                if not self.shared:
                    raise
        await self._bind()
        self.ready = True
        logger.info("Consuming stream %s with consumer %s", STREAM, self.consumer_name)

    async def _bind(self):
        """Start pulling from this bridge's consumer, in place of any earlier subscription."""
        await self._unsubscribe()
        subscription = PullConsumer(
            self.connection, STREAM, self.consumer_name, batch=FETCH_BATCH, expires=FETCH_TIMEOUT_SECONDS
        )
        await subscription.start()
        self.subscription = subscription

    def _consumer_config(self, stream_last_sequence):
        """
        Return the configuration of this process's consumer.

        On the first start it receives only events published from now on,
        like the consumer of oCIS. When it has to be created again (it was
        deleted, or NATS lost it), it resumes after the last handled event,
        so that no event published in between is skipped.
        """
        config = ConsumerConfig(
            name=self.consumer_name,
            durable_name=self.consumer_name if self.shared else None,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            # One acknowledgement per batch, for its last message.
            ack_policy=AckPolicy.ALL,
            ack_wait=self.config.events_ack_wait,
            max_ack_pending=MAX_ACK_PENDING,
            filter_subject=SUBJECT,
            inactive_threshold=None if self.shared else CONSUMER_INACTIVE_THRESHOLD_SECONDS,
        )
        if self.last_sequence is None:
            self.last_sequence = stream_last_sequence
        elif stream_last_sequence < self.last_sequence:
            # The stream was recreated and numbers from 1 again, so every
            # event in it is one this bridge has not seen.
            logger.warning("Stream %s was reset; consuming it from the start", STREAM)
            self.last_sequence = 0
        elif not self.shared:
            logger.warning("Consumer %s was lost; resuming after stream sequence %d", self.consumer_name, self.last_sequence)
        config.opt_start_seq = self.last_sequence + 1
        history.start(self.stream_created, self.last_sequence)
        return config

    async def _take_over(self):
        """Rewind the shared consumer to its acknowledgement floor and bind to it."""
        js = self.connection.jetstream()
        stream = await js.stream_info(STREAM)
        try:
            info = await js.consumer_info(STREAM, self.consumer_name)
        except nats.js.errors.NotFoundError:
            config = self._consumer_config(stream.state.last_seq)
        else:
            self.last_sequence = info.ack_floor.stream_seq
            await js.delete_consumer(STREAM, self.consumer_name)
            config = self._consumer_config(stream.state.last_seq)
        await js.add_consumer(STREAM, config=config)
        await self._bind()
        logger.info("Consuming stream %s from sequence %d with consumer %s", STREAM, config.opt_start_seq, self.consumer_name)

    async def _consume(self):
        while not self._stopping.is_set():
            if self.shared:
                held, acquired = await self.leadership.hold()
                if not held:
                    # A waiting bridge is healthy: it takes over when the
                    # leader goes away.
                    await self._unsubscribe()
                    self.ready = True
                    await self._sleep(REFRESH_SECONDS)
                    continue
                if acquired:
                    await self._take_over()

            messages = await self.subscription.next_batch(FETCH_TIMEOUT_SECONDS)
            # next_batch() raises when JetStream rejects the requests or stops
            # responding, so a return shows that the consumer exists.
            self.ready = True
            self._pulled_since_failure = True

            outgoing = []
            settle = [await self.handle(message, outgoing) for message in messages]
            await self._send(outgoing)
            # Each delivered message added its one payload for one or more groups.
            DELIVERED.inc(len({id(payload) for _, payload in outgoing}))
            await self._settle(messages, settle)

    async def _send(self, outgoing):
        """Send the ``(group, message)`` pairs of a batch into the channel layer, in order."""
        send_many = getattr(self.channel_layer, "group_send_many", None)
        if send_many is not None:
            await send_many(outgoing)
            return
        for group, payload in outgoing:
            await self.channel_layer.group_send(group, payload)

    async def _settle(self, messages, settle):
        """
        Settle a handled batch: terminate its malformed messages, then
        acknowledge the last of the others, which with ``AckPolicy.ALL``
        acknowledges every message before it as well.
        """
        last = None
        for message, acknowledge in zip(messages, settle):
            if acknowledge == message.term:
                await acknowledge()
            else:
                last = message
        if last is not None:
            await last.ack()

    async def handle(self, message, outgoing):
        """
        Decode one NATS message, append the ``(group, message)`` pairs to
        send to ``outgoing``, and return how to settle it:
        ``message.ack``, or ``message.term`` for a malformed one, which
        JetStream then never redelivers. Never raises for bad input.
        """
        self.last_sequence = message.metadata.sequence.stream
        try:
            event = decode_event(message.data)
        except MalformedEvent as error:
            metrics.EVENTS_RECEIVED.labels(result="malformed").inc()
            logger.warning("Skipped malformed event: %s", error, extra={"stream_sequence": self.last_sequence})
            return message.term

        if event is None:
            metrics.EVENTS_RECEIVED.labels(result="ignored").inc()
            return message.ack

        if len(event.message) > self.config.max_message_size:
            metrics.EVENTS_RECEIVED.labels(result="too_large").inc()
            metrics.EVENTS_DROPPED.labels(reason="too_large").inc()
            logger.warning(
                "Dropped a %s event of %d bytes, more than SSE_MAX_MESSAGE_SIZE (%d bytes)",
                event.type,
                len(event.message),
                self.config.max_message_size,
                extra={"stream_sequence": self.last_sequence, "event_type": event.type, "size": len(event.message)},
            )
            # Acknowledged, because it would be too large again on redelivery.
            return message.ack

        span = tracing.start_delivery_span(event) if tracing.enabled else None
        payload = {
            "type": "sse.event",
            "frame": encode_frame(event.type, event.message, self.last_sequence),
            "id": self.last_sequence,
            "stream": self.stream_created,
            "published": timestamp_seconds(event.timestamp),
        }
        if span is not None:
            payload["trace"] = tracing.traceparent_of(span)

        groups = target_groups(event.user_ids)
        history.record(self.last_sequence, groups, payload)
        outgoing.extend((group, payload) for group in groups)

        if span is not None:
            span.end()
        return message.ack

    async def _on_error(self, error):
        now = time.monotonic()
        text = str(error) or type(error).__name__
        if text == self._last_error and now - self._last_error_logged_at < REPEATED_ERROR_LOG_SECONDS:
            self._suppressed_errors += 1
            return
        if self._suppressed_errors:
            logger.error("NATS error: %s (%d repeats not logged)", text, self._suppressed_errors)
        else:
            logger.error("NATS error: %s", text)
        self._last_error = text
        self._last_error_logged_at = now
        self._suppressed_errors = 0

    async def _on_disconnected(self):
        self.ready = False
        if not self._stopping.is_set():
            logger.warning("Disconnected from NATS")

    async def _on_reconnected(self):
        if self.subscription is not None:
            self.subscription.forget_requests()
        logger.info("Reconnected to NATS at %s:%s", self.connection.connected_url.hostname, self.connection.connected_url.port)
