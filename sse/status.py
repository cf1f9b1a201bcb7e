"""
Live state of this process, for the debug server and the admin site.

Counts, not identities: the state records how many streams and users are
connected, never who.
"""

from collections import Counter


class ServiceStatus:
    """Open streams per user and the bridge of this process, if one runs."""

    def __init__(self):
        self._streams = Counter()
        self.bridge = None

    def stream_opened(self, user_id):
        self._streams[user_id] += 1

    def stream_closed(self, user_id):
        self._streams[user_id] -= 1
        if self._streams[user_id] <= 0:
            del self._streams[user_id]

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
