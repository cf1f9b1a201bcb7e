"""
An in-memory channel layer for event streams.

It keeps the channel-layer API of ``channels.layers.InMemoryChannelLayer``
but differs where a stream service needs it to:

* A full channel is never skipped silently by ``group_send``. Its queued
  messages are discarded and replaced by one ``{"type": "sse.overflow",
  "dropped": N}`` message, so the consumer learns that it fell behind and
  can end its stream instead of leaving a gap.
* Expired messages are swept at most once per ``sweep_interval`` seconds
  instead of on every send and receive, which made the stock layer's cost
  grow with the square of the number of open channels.
* A channel costs a few hundred bytes instead of an ``asyncio.Queue`` with
  its four deques, which matters with one channel per open stream.
* Group membership does not expire with time; it ends with
  ``group_discard`` or when a channel's messages expire unread.
* ``group_send`` copies the message once and gives every member the same
  copy, so receivers must treat messages as read-only. A message whose
  values are all immutable (strings, bytes, numbers, ``None``) is copied
  shallowly, which saves most of the cost of a send.
"""

import asyncio
import collections
import random
import string
import time
from copy import deepcopy

import channels_redis.pubsub
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

OVERFLOW = "sse.overflow"

IMMUTABLE_TYPES = frozenset({str, bytes, int, float, bool, type(None)})


def copy_message(message):
    """Return a copy of ``message`` that later changes to it cannot reach."""
    if all(type(value) in IMMUTABLE_TYPES for value in message.values()):
        return dict(message)
    return deepcopy(message)


class Channel:
    """
    The messages waiting on one channel, and the receiver waiting for them.

    ``messages`` is ``None`` while empty, so that the thousands of idle
    channels of a server with many streams hold no deque.
    """

    __slots__ = ("capacity", "messages", "waiter", "receivers")

    def __init__(self, capacity):
        self.capacity = capacity
        self.messages = None
        self.waiter = None
        self.receivers = 0

    def __len__(self):
        return len(self.messages) if self.messages else 0

    def put(self, item):
        """Append ``item`` and wake the receiver; return ``False`` when the channel is full."""
        if self.messages is None:
            self.messages = collections.deque()
        elif len(self.messages) >= self.capacity:
            return False
        self.messages.append(item)
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def pop(self):
        """Remove and return the oldest item; the channel must not be empty."""
        item = self.messages.popleft()
        if not self.messages:
            self.messages = None
        return item

    async def wait(self):
        """Wait until an item arrives; receivers that wait at the same time share one future."""
        if self.waiter is None or self.waiter.done():
            self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter


class InMemoryChannelLayer(BaseChannelLayer):
    """A process-local channel layer; ``capacity`` is the queue length per channel."""

    extensions = ["groups", "flush"]

    def __init__(self, expiry=60, capacity=1000, channel_capacity=None, sweep_interval=1.0, **kwargs):
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity, **kwargs)
        self.sweep_interval = sweep_interval
        self.channels = {}
        self.groups = {}
        # Channels that may hold messages. Most channels are empty, with a
        # consumer waiting on them, so the sweep looks only at these.
        self._filled = set()
        self._next_sweep = 0.0

    def _channel(self, name):
        channel = self.channels.get(name)
        if channel is None:
            channel = self.channels[name] = Channel(self.get_capacity(name))
        return channel

    async def send(self, channel, message):
        """Queue ``message`` on ``channel``; raises ``ChannelFull`` when its queue is full."""
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        self._sweep_if_due()

        if not self._channel(channel).put((time.monotonic() + self.expiry, copy_message(message))):
            raise ChannelFull(channel)
        self._filled.add(channel)

    async def receive(self, channel):
        """Wait for and return the next message on ``channel``."""
        self.require_valid_channel_name(channel)
        self._sweep_if_due()

        queue = self._channel(channel)
        queue.receivers += 1
        try:
            while not queue.messages:
                try:
                    await queue.wait()
                except asyncio.CancelledError:
                    if asyncio.current_task().cancelling():
                        raise
                    # Another receiver, cancelled while waiting, cancelled
                    # the future this one shared with it.
        except asyncio.CancelledError:
            # The consumer has ended: forget its channel so that channels of
            # ended consumers do not accumulate. A live consumer keeps its
            # channel, because a new one per message is garbage per message.
            if queue.receivers == 1 and not queue.messages and self.channels.get(channel) is queue:
                del self.channels[channel]
                self._filled.discard(channel)
            raise
        finally:
            queue.receivers -= 1
        _, message = queue.pop()
        return message

    async def new_channel(self, prefix="specific."):
        suffix = "".join(random.choices(string.ascii_letters, k=12))
        return f"{prefix}.inmemory!{suffix}"

    async def group_add(self, group, channel):
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self.groups.setdefault(group, {})[channel] = None

    async def group_discard(self, group, channel):
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        members = self.groups.get(group)
        if members is None:
            return
        members.pop(channel, None)
        if not members:
            del self.groups[group]

    async def group_send(self, group, message):
        """
        Queue ``message`` on every channel of ``group``.

        A member whose queue is full gets an ``sse.overflow`` message in
        place of everything it had queued.
        """
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        self._sweep_if_due()

        members = self.groups.get(group)
        if not members:
            return

        item = (time.monotonic() + self.expiry, copy_message(message))
        for channel in list(members):
            queue = self._channel(channel)
            if not queue.put(item):
                self._overflow(queue)
            self._filled.add(channel)

    def _overflow(self, queue):
        dropped = 1
        while queue.messages:
            _, queued = queue.pop()
            dropped += queued.get("dropped", 1) if queued.get("type") == OVERFLOW else 1
        queue.put((time.monotonic() + self.expiry, {"type": OVERFLOW, "dropped": dropped}))

    async def flush(self):
        self.channels = {}
        self.groups = {}
        self._filled = set()

    async def close(self):
        pass

    def _sweep_if_due(self):
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_interval
            self._sweep(now)

    def _sweep(self, now):
        """Drop expired messages; a channel that let one expire has no live consumer and leaves its groups."""
        for channel in list(self._filled):
            queue = self.channels.get(channel)
            if queue is None or not queue.messages:
                self._filled.discard(channel)
                continue
            expired = False
            while queue.messages and queue.messages[0][0] < now:
                queue.pop()
                expired = True
            if not expired:
                continue
            for group, members in list(self.groups.items()):
                members.pop(channel, None)
                if not members:
                    del self.groups[group]
            if not queue.messages:
                self.channels.pop(channel, None)
                self._filled.discard(channel)


class RedisPubSubChannelLayer(channels_redis.pubsub.RedisPubSubChannelLayer):
    """
    channels-redis' pub/sub layer, plus ``group_send_many()``, which
    publishes a whole batch of group messages in one round trip per Redis
    server.

    ``group_send`` waits for the reply to each ``PUBLISH`` before the next
    one can start, which limited the bridge to a few thousand events per
    second. This uses internals of channels-redis 4.3 (its shards and their
    lock), which is why requirements.txt pins that version.

    NOTE: with several Redis hosts, a user's group and the broadcast group
    may hash to different hosts, so a broadcast can overtake an earlier
    event of that user, and the stream drops the overtaken event as an
    old id. runsse configures one host (SSE_CHANNEL_LAYER_URL).
    """

    async def group_send_many(self, messages):
        """Send each ``(group, message)`` of ``messages``, in order per Redis server."""
        layer = self._get_layer()
        batches = {}
        for group, message in messages:
            channel = layer._get_group_channel_name(group)
            shard = layer._get_shard(channel)
            batches.setdefault(shard, []).append((channel, self.serialize(message)))
        for shard, batch in batches.items():
            async with shard._lock:
                shard._ensure_redis()
                pipeline = shard._redis.pipeline(transaction=False)
                for channel, data in batch:
                    pipeline.publish(channel, data)
                await pipeline.execute()
