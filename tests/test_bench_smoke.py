"""
The benchmark harness under ``bench/`` on a few streams: every server under
test delivers each event exactly once and in order, and every stream of the
reconnect storm opens. Speed is not checked.
"""

import asyncio
import json

from bench.client import DJANGO_EVENTSTREAM, LoadClient, StreamCheck, StreamProtocol
from bench.report import _comparisons, markdown_report
from bench.run import parse_args, run_smoke
from bench.servers import free_port
from bench.storm import StormClients
from bench.workload import event_message

SERVERS = ("runsse", "runsse-redis", "floor", "eventstream")
SMOKE_STREAMS = 12


def block(event_id, key, n):
    return f"id: {event_id}\nevent: bench\ndata: {event_message(key, n, 1.0)}".encode()


def eventstream_block(key, n):
    """An event as django-eventstream writes it: no id, the data JSON-encoded."""
    return f"event: bench\ndata: {json.dumps(event_message(key, n, 1.0))}".encode()


async def test_bench_smoke_delivers_everything_once():
    results = await run_smoke(SERVERS, streams=SMOKE_STREAMS)

    assert set(results) == set(SERVERS)
    for server, by_scenario in results.items():
        checks = {scenario: value["check"] for scenario, value in by_scenario.items() if "check" in value}
        assert set(checks) == {"latency", "burst", "broadcast", "fanout", "tabs", "storm"}, server
        for scenario, check in checks.items():
            assert check.expected > 0, f"{server} {scenario}: nothing was expected"
            assert check.correct, f"{server} {scenario}: {check.summary()}"
            assert check.delivered == check.expected, f"{server} {scenario}: {check.summary()}"

        storm = by_scenario["storm"]
        assert storm["streams"] == SMOKE_STREAMS, server
        assert storm["opened"] == SMOKE_STREAMS, f"{server}: {storm['failures']}"
        assert storm["failures"] == {}, server
        assert storm["client_processes"] == 2, server
        assert 0 < storm["last_first_bytes_s"] <= storm["last_opened_s"], server

    args = parse_args(["--servers", ",".join(SERVERS), "--streams", str(SMOKE_STREAMS), "--repeat", "1"])
    report = markdown_report({SMOKE_STREAMS: {name: [result] for name, result in results.items()}}, args)
    assert (
        "| scenario | runsse | runsse-redis | floor | eventstream | runsse / floor | runsse-redis / floor "
        "| runsse / eventstream | runsse-redis / eventstream |"
    ) in report
    assert "storm: last stream opened after (s)" in report
    assert "### Linearity" in report
    assert f"### Targets, measured at {SMOKE_STREAMS} streams" in report
    assert "| 6. redis layer, per-user burst: deliveries/s | runsse-redis |" in report


def test_report_compares_with_eventstream_when_run():
    assert _comparisons(["runsse", "floor"]) == [("runsse", "floor")]
    assert _comparisons(["runsse", "runsse-redis", "eventstream", "floor"]) == [
        ("runsse", "floor"), ("runsse-redis", "floor"), ("runsse", "eventstream"), ("runsse-redis", "eventstream"),
    ]
    assert _comparisons(["runsse"]) == []


async def test_storm_counts_refused_connects():
    clients = StormClients(free_port(), 6, 2, timeout=3)
    try:
        await clients.start()
        result = await clients.storm()
    finally:
        await clients.close()

    assert result["opened"] == 0
    assert result["failed"] == 6
    assert result["failures"] == {"refused": 6}


async def test_storm_counts_rejected_streams():
    async def reject(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reject, "127.0.0.1", 0)
    clients = StormClients(server.sockets[0].getsockname()[1], 6, 2, timeout=3)
    try:
        await clients.start()
        result = await clients.storm()
    finally:
        await clients.close()
        server.close()
        await server.wait_closed()

    assert result["opened"] == 0
    assert result["failures"] == {"status 503": 6}


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
