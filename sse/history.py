"""
Recent events kept in memory, so that a client that reconnects with
``Last-Event-ID`` gets what it missed.

The bridge records every SendSSE event it hands to the channel layer,
including events for users without an open stream. With per-instance
consumers every process receives every event, so a client may reconnect to any
process: the event ids are JetStream stream sequences and mean the same
everywhere.
"""

import collections
import time

from .groups import BROADCAST_GROUP


class EventHistory:
    """
    The last ``max_events`` events of at most ``window`` seconds and
    ``max_bytes`` bytes of encoded frames, oldest first.
    """

    def __init__(self, max_events=0, window=0.0, max_bytes=0):
        self.configure(max_events, window, max_bytes)

    def configure(self, max_events, window, max_bytes):
        self.max_events = max_events
        self.window = window
        self.max_bytes = max_bytes
        self.bytes = 0
        self.events = collections.deque()
        self.stream = None
        # Every event after this sequence is known: either kept, or it was
        # no SendSSE event. Events up to it were dropped or never seen.
        self.complete_after = 0
        self.newest = 0

    @property
    def enabled(self):
        return self.max_events > 0 and self.window > 0

    def start(self, stream, after_sequence):
        """Note that the bridge consumes ``stream`` from ``after_sequence + 1`` on."""
        if stream == self.stream:
            return
        # A new bridge start, or a reset stream that numbers from 1 again:
        # older ids mean nothing now.
        self.events.clear()
        self.bytes = 0
        self.stream = stream
        self.complete_after = after_sequence
        self.newest = after_sequence

    def record(self, sequence, groups, message):
        """Remember the channel-layer ``message`` of event ``sequence``, sent to ``groups``."""
        if not self.enabled:
            return
        self.events.append((time.monotonic(), sequence, frozenset(groups), message))
        self.bytes += len(message.get("frame", b""))
        self.newest = sequence
        while len(self.events) > self.max_events or (self.max_bytes and self.bytes > self.max_bytes):
            self._drop_oldest()

    def since(self, last_id, groups):
        """
        Return the messages after event ``last_id`` sent to any of
        ``groups``, oldest first, or ``None`` when the history cannot tell
        what came after ``last_id``: an id it has not seen yet, or one older
        than what is kept.
        """
        if not self.enabled:
            return None
        deadline = time.monotonic() - self.window
        while self.events and self.events[0][0] < deadline:
            self._drop_oldest()
        if not self.complete_after <= last_id <= self.newest:
            return None

        requested = set(groups) | {BROADCAST_GROUP}
        return [message for _, sequence, sent_to, message in self.events if sequence > last_id and sent_to & requested]

    def _drop_oldest(self):
        _, sequence, _, message = self.events.popleft()
        self.bytes -= len(message.get("frame", b""))
        self.complete_after = sequence


history = EventHistory()
