"""
The benchmark harness under ``bench/`` on a few streams: every server under
test delivers each event exactly once and in order. Speed is not checked.
"""

import json

from bench.client import DJANGO_EVENTSTREAM, LoadClient, StreamCheck, StreamProtocol
from bench.run import run_smoke
from bench.workload import event_message

SERVERS = ("runsse", "floor", "eventstream")


def block(event_id, key, n):
    return f"id: {event_id}\nevent: bench\ndata: {event_message(key, n, 1.0)}".encode()


def eventstream_block(key, n):
    """An event as django-eventstream writes it: no id, the data JSON-encoded."""
    return f"event: bench\ndata: {json.dumps(event_message(key, n, 1.0))}".encode()


async def test_bench_smoke_delivers_everything_once():
    checks = await run_smoke(SERVERS)

    assert set(checks) == set(SERVERS)
    for server, by_scenario in checks.items():
        assert set(by_scenario) == {"latency", "burst", "broadcast", "fanout", "tabs"}, server
        for scenario, check in by_scenario.items():
            assert check.expected > 0, f"{server} {scenario}: nothing was expected"
            assert check.correct, f"{server} {scenario}: {check.summary()}"
            assert check.delivered == check.expected, f"{server} {scenario}: {check.summary()}"


def test_stream_check_finds_gaps_and_duplicates():
    events = [(2.0, block(1, "u1", 0)), (2.0, block(2, "u1", 0)), (2.0, block(3, "u1", 2)), (2.0, block(4, "all", 0))]
    result = StreamCheck()

    LoadClient._check_stream(events, {"u1": 3, "all": 1}, result)

    assert result.duplicates == 1
    assert result.missing == 1
    assert result.out_of_order == 1
    assert result.unexpected == 0
    assert not result.correct


def test_stream_check_finds_falling_ids():
    events = [(2.0, block(5, "u1", 0)), (2.0, block(4, "u1", 1))]
    result = StreamCheck()

    LoadClient._check_stream(events, {"u1": 2, "all": 0}, result)

    assert result.out_of_order == 1
    assert result.missing == 0


def test_eventstream_check_finds_gaps_and_duplicates():
    events = [
        (2.0, eventstream_block("u1", 0)),
        (2.0, eventstream_block("all", 0)),
        (2.0, eventstream_block("u1", 0)),
        (2.0, eventstream_block("u1", 2)),
    ]
    result = StreamCheck()

    LoadClient._check_stream(events, {"u1": 3, "all": 1}, result, DJANGO_EVENTSTREAM)

    assert result.delivered == 4
    assert result.duplicates == 1
    assert result.missing == 1
    assert result.out_of_order == 1
    assert result.unexpected == 0


def test_eventstream_check_accepts_missing_ids():
    events = [(2.0, eventstream_block("u1", 0)), (2.0, eventstream_block("all", 0)), (2.0, eventstream_block("u1", 1))]
    result = StreamCheck()

    LoadClient._check_stream(events, {"u1": 2, "all": 1}, result, DJANGO_EVENTSTREAM)

    assert result.correct, result.summary()
    assert result.delivered == 3


def test_eventstream_check_counts_unreadable_data():
    stream_error = b'event: stream-error\nid: error\ndata: {"condition": "forbidden", "text": "denied"}'
    events = [(2.0, stream_error), (2.0, b"event: bench\ndata: not json")]
    result = StreamCheck()

    LoadClient._check_stream(events, {"u1": 0, "all": 0}, result, DJANGO_EVENTSTREAM)

    assert result.unexpected == 2
    assert not result.correct


async def test_eventstream_protocol_skips_control_blocks():
    client = LoadClient(0, event_format=DJANGO_EVENTSTREAM)
    protocol = StreamProtocol(client, b"")
    protocol.head_done = True
    body = (
        b":" + b" " * 2048 + b"\n\n"
        + b"event: stream-open\ndata:\n\n"
        + eventstream_block("u1", 0) + b"\n\n"
        + b"event: keep-alive\ndata:\n\n"
    )

    protocol.data_received(body)

    assert protocol.opened.done()
    assert [block for _, block in protocol.events] == [eventstream_block("u1", 0)]
    assert client.delivered == 1
