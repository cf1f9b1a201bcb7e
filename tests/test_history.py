import time

from sse.groups import BROADCAST_GROUP
from sse.history import EventHistory


def filled(max_events=10, window=60.0):
    history = EventHistory(max_events, window)
    history.start("stream-a", 100)
    history.record(101, ["alice"], {"id": 101})
    history.record(103, ["bob"], {"id": 103})
    history.record(104, [BROADCAST_GROUP], {"id": 104})
    history.record(106, ["alice", "bob"], {"id": 106})
    return history


def test_since_filters_by_group_in_order():
    history = filled()

    assert history.since(100, ["alice", BROADCAST_GROUP]) == [{"id": 101}, {"id": 104}, {"id": 106}]
    assert history.since(103, ["bob", BROADCAST_GROUP]) == [{"id": 104}, {"id": 106}]
    assert history.since(106, ["alice", BROADCAST_GROUP]) == []


def test_since_unknown_ids():
    history = filled()

    assert history.since(99, ["alice"]) is None
    assert history.since(107, ["alice"]) is None


def test_dropped_events_make_older_ids_unknown():
    history = filled(max_events=2)

    assert history.since(101, ["alice"]) is None
    assert history.since(103, ["alice"]) == [{"id": 104}, {"id": 106}]


def test_window_expires_events():
    history = filled(window=0.05)
    time.sleep(0.1)

    assert history.since(100, ["alice"]) is None
    assert history.since(106, ["alice"]) == []


def test_new_stream_forgets_old_ids():
    history = filled()
    history.start("stream-b", 0)
    history.record(1, ["alice"], {"id": 1})

    assert history.since(0, ["alice"]) == [{"id": 1}]
    assert history.since(101, ["alice"]) is None


def test_same_stream_keeps_events_on_restart():
    history = filled()
    history.start("stream-a", 106)

    assert history.since(100, ["alice"]) == [{"id": 101}, {"id": 104}, {"id": 106}]


def test_byte_limit_drops_oldest():
    history = EventHistory(10, 60.0, max_bytes=250)
    history.start("stream-a", 0)
    for sequence in range(1, 4):
        history.record(sequence, ["alice"], {"id": sequence, "frame": b"x" * 100})

    assert history.since(0, ["alice"]) is None
    assert [message["id"] for message in history.since(1, ["alice"])] == [2, 3]


def test_disabled_history_knows_nothing():
    history = EventHistory(0, 60.0)
    history.start("stream-a", 0)
    history.record(1, ["alice"], {"id": 1})

    assert history.since(0, ["alice"]) is None
