"""
The bridge from NATS JetStream to django-eventstream.

A pull consumer on the ``main-queue`` stream fetches and acknowledges like
``bench.floor`` and the runsse bridge. Each ``SendSSE`` event becomes one
``send_event()`` call per addressed user on the channel ``user-<id>``, or
one call on the channel ``all`` when ``UserIDs`` contains ``all``.
``send_event()`` JSON-encodes the message text, as its README describes.
"""

import asyncio
import logging
import uuid

import nats
from django.conf import settings
from django_eventstream import send_event
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench.publisher import add_stream_if_missing
from sse.exceptions import MalformedEvent
from sse.wire import BROADCAST_USER_ID, decode_event

from .channelmanager import BROADCAST_CHANNEL, user_channel

logger = logging.getLogger(__name__)

SUBJECT = "main-queue"
FETCH_BATCH = 256
FETCH_TIMEOUT_SECONDS = 2.0


class Bridge:
    """
    The consumer task that moves events from ``main-queue`` to
    ``send_event()``. ``ready`` turns true once its JetStream consumer exists.
    """

    def __init__(self, nats_url):
        self.nats_url = nats_url
        self.ready = False
        self.task = None

    def start(self):
        """Start consuming in a task of the current event loop."""
        self.task = asyncio.get_event_loop().create_task(self.consume())
        self.task.add_done_callback(self._log_failure)

    async def stop(self):
        # A task that already failed has logged its error in _log_failure.
        if self.task is None or self.task.done():
            return
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass

    @staticmethod
    def _log_failure(task):
        if not task.cancelled() and task.exception() is not None:
            logger.error("The NATS bridge stopped: %r", task.exception())

    async def consume(self):
        connection = await nats.connect(self.nats_url)
        try:
            js = connection.jetstream()
            await add_stream_if_missing(js)
            name = f"eventstream-{uuid.uuid4()}"
            config = ConsumerConfig(
                name=name, deliver_policy=DeliverPolicy.NEW, ack_policy=AckPolicy.EXPLICIT, filter_subject=SUBJECT
            )
            await js.add_consumer(SUBJECT, config=config)
            subscription = await js.pull_subscribe_bind(stream=SUBJECT, consumer=name)
            self.ready = True

            while True:
                try:
                    messages = await subscription.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_SECONDS)
                except asyncio.TimeoutError:
                    # No message within the timeout. fetch() raises
                    # nats.errors.TimeoutError, a subclass, or on some
                    # paths of nats-py 2.16 asyncio's own.
                    continue
                for message in messages:
                    forward(message)
                    await message.ack()
                    # send_event() queues at most 10 events per stream and
                    # channel until the stream's task runs (MAX_PENDING in
                    # django_eventstream.views) and, without storage, drops
                    # the rest. Yielding here lets the streams run between
                    # two events, as they would between the views that
                    # django-eventstream expects to call send_event().
                    await asyncio.sleep(0)
        finally:
            self.ready = False
            await connection.close()


def forward(message):
    """Call ``send_event()`` for the ``SendSSE`` event in one NATS message."""
    try:
        event = decode_event(message.data)
    except MalformedEvent as error:
        logger.warning("Skipped malformed event at stream sequence %d: %s", message.metadata.sequence.stream, error)
        return
    if event is None:
        return

    text = event.message.decode("utf-8", errors="replace")
    if BROADCAST_USER_ID in event.user_ids:
        send_event(BROADCAST_CHANNEL, event.type, text)
        return
    for user_id in event.user_ids:
        send_event(user_channel(user_id), event.type, text)


# The one bridge of this process, which asgi.py starts.
bridge = Bridge(settings.BENCH_NATS_URL)
