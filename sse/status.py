"""
Live state of this process, for the debug server and the admin site.

Counts, not identities: the state records how many streams and users are
connected, never who.
"""

from collections import Counter


class ServiceStatus:
    """Open streams per user, the channels of the open streams, and the bridge of this process, if one runs."""

    def __init__(self):
        self._streams = Counter()
        self.channels = set()
        self.bridge = None

    def channel_opened(self, channel_name):
        self.channels.add(channel_name)

    def channel_closed(self, channel_name):
        self.channels.discard(channel_name)

    def stream_opened(self, user_id):
        self._streams[user_id] += 1

    def stream_closed(self, user_id):
        self._streams[user_id] -= 1
        if self._streams[user_id] <= 0:
            del self._streams[user_id]

    def streams_of(self, user_id):
        """Return the number of open streams of ``user_id``."""
        return self._streams.get(user_id, 0)

    @property
    def streams(self):
        """The number of open streams."""
        return sum(self._streams.values())

    @property
    def users(self):
        """The number of users with at least one open stream."""
        return len(self._streams)

    @property
    def nats_state(self):
        """``"consuming"``, ``"not ready"``, or ``"not running"`` when this process has no bridge."""
        if self.bridge is None:
            return "not running"
        return "consuming" if self.bridge.ready else "not ready"


status = ServiceStatus()
