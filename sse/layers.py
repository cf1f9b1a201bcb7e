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
* Group membership does not expire with time; it ends with
  ``group_discard`` or when a channel's messages expire unread.
* ``group_send`` copies the message once and gives every member the same
  copy, so receivers must treat messages as read-only. A message whose
  values are all immutable (strings, bytes, numbers, ``None``) is copied
  shallowly, which is most of the cost of a send saved.
"""

import asyncio
import random
import string
import time
from copy import deepcopy

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

OVERFLOW = "sse.overflow"

IMMUTABLE_TYPES = frozenset({str, bytes, int, float, bool, type(None)})


def copy_message(message):
    """Return a copy of ``message`` that later changes to it cannot reach."""
    if all(type(value) in IMMUTABLE_TYPES for value in message.values()):
        return dict(message)
    return deepcopy(message)


class InMemoryChannelLayer(BaseChannelLayer):
    """A process-local channel layer; ``capacity`` is the queue length per channel."""

    extensions = ["groups", "flush"]

    def __init__(self, expiry=60, capacity=1000, channel_capacity=None, sweep_interval=1.0, **kwargs):
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity, **kwargs)
        self.sweep_interval = sweep_interval
        self.channels = {}
        self.groups = {}
        # Channels that may hold messages. Most queues are empty, with a
        # consumer waiting on them, so the sweep looks only at these.
        self._filled = set()
        self._next_sweep = 0.0

    def _queue(self, channel):
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        return queue

    async def send(self, channel, message):
        """Queue ``message`` on ``channel``; raises ``ChannelFull`` when its queue is full."""
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        self._sweep_if_due()

        try:
            self._queue(channel).put_nowait((time.monotonic() + self.expiry, copy_message(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None
        self._filled.add(channel)

    async def receive(self, channel):
        """Wait for and return the next message on ``channel``."""
        self.require_valid_channel_name(channel)
        self._sweep_if_due()

        queue = self._queue(channel)
        try:
            _, message = await queue.get()
        except asyncio.CancelledError:
            # The consumer has ended: forget its queue so that channels of
            # ended consumers do not accumulate. A live consumer keeps its
            # queue, because a new one per message is garbage per message.
            if queue.empty() and self.channels.get(channel) is queue:
                del self.channels[channel]
                self._filled.discard(channel)
            raise
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
            queue = self._queue(channel)
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                self._overflow(queue)
            self._filled.add(channel)

    def _overflow(self, queue):
        dropped = 1
        while not queue.empty():
            _, queued = queue.get_nowait()
            dropped += queued.get("dropped", 1) if queued.get("type") == OVERFLOW else 1
        queue.put_nowait((time.monotonic() + self.expiry, {"type": OVERFLOW, "dropped": dropped}))

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
            if queue is None or queue.empty():
                self._filled.discard(channel)
                continue
            expired = False
            while not queue.empty() and queue._queue[0][0] < now:
                queue.get_nowait()
                expired = True
            if not expired:
                continue
            for group, members in list(self.groups.items()):
                members.pop(channel, None)
                if not members:
                    del self.groups[group]
            if queue.empty():
                self.channels.pop(channel, None)
                self._filled.discard(channel)
