"""
Missed events read back from the JetStream stream itself.

When the in-memory history of this process cannot place a client's
``Last-Event-ID`` (the process runs no bridge, or started after that
event), the events are still in the ``main-queue`` stream. This module
reads the stream from the event after that id, keeps the SendSSE events
for the client's groups, and encodes them as the bridge would. It costs
one pass over every event published since, so it is bounded by
``SSE_REPLAY_MAX_EVENTS`` and ``SSE_REPLAY_WINDOW`` like the history.
"""

import asyncio
import logging
import time

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from .bridge import STREAM, SUBJECT, target_groups
from .nats_options import nats_connect_options
from .exceptions import MalformedEvent
from .groups import BROADCAST_GROUP
from .wire import decode_event, encode_frame, timestamp_seconds

logger = logging.getLogger(__name__)

FETCH_BATCH = 512
FETCH_TIMEOUT_SECONDS = 2.0


class JetStreamReplay:
    """Read missed events from JetStream over a connection opened on first use."""

    def __init__(self):
        self.config = None
        self.connection = None
        self._connecting = asyncio.Lock()

    def configure(self, config):
        self.config = config

    async def _jetstream(self):
        async with self._connecting:
            if self.connection is None or self.connection.is_closed:
                options = nats_connect_options(self.config)
                options.update(max_reconnect_attempts=1, reconnect_time_wait=0.2, name="sse-replay")
                self.connection = await nats.connect(**options)
        return self.connection.jetstream()

    async def since(self, last_id, groups):
        """
        Return the channel-layer messages of the events after ``last_id``
        for ``groups``, oldest first, or ``None`` when the stream cannot
        tell: the id is unknown or gone, too many events came since, or the
        first of them is older than the window. Never raises.
        """
        if self.config is None or self.config.replay_max_events == 0:
            return None
        try:
            return await self._since(last_id, groups)
        except Exception as error:
            logger.warning("Reading missed events from JetStream failed: %s", str(error) or type(error).__name__)
            return None

    async def _since(self, last_id, groups):
        js = await self._jetstream()
        stream = await js.stream_info(STREAM)
        first, last = stream.state.first_seq, stream.state.last_seq
        if not first - 1 <= last_id <= last or last - last_id > self.config.replay_max_events:
            return None
        if last_id == last:
            return []

        subscription = await js.pull_subscribe(
            SUBJECT,
            stream=STREAM,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=last_id + 1,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=10.0,
                mem_storage=True,
            ),
        )
        try:
            return await self._collect(subscription, last, set(groups) | {BROADCAST_GROUP}, str(stream.created))
        finally:
            await subscription.unsubscribe()

    async def _collect(self, subscription, last, requested, stream_created):
        oldest_allowed = time.time() - self.config.replay_window
        missed = []
        checked_age = False
        sequence = 0
        while sequence < last:
            for message in await subscription.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_SECONDS):
                sequence = message.metadata.sequence.stream
                try:
                    event = decode_event(message.data)
                except MalformedEvent:
                    continue
                if event is None or len(event.message) > self.config.max_message_size:
                    continue

                published = timestamp_seconds(event.timestamp)
                if not checked_age:
                    checked_age = True
                    if published is not None and published < oldest_allowed:
                        return None
                if not requested.intersection(target_groups(event.user_ids)):
                    continue
                missed.append(
                    {
                        "type": "sse.event",
                        "frame": encode_frame(event.type, event.message, sequence),
                        "id": sequence,
                        "stream": stream_created,
                    }
                )
        return missed

    async def close(self):
        if self.connection is not None and not self.connection.is_closed:
            await self.connection.close()


replay = JetStreamReplay()
