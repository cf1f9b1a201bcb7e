"""
The benchmark harness under ``bench/`` on a few streams: every server under
test delivers each event exactly once and in order. Speed is not checked.
"""

from bench.client import LoadClient, StreamCheck
from bench.run import run_smoke
from bench.workload import event_message


def block(event_id, key, n):
    return f"id: {event_id}\nevent: bench\ndata: {event_message(key, n, 1.0)}".encode()


async def test_bench_smoke_delivers_everything_once():
    checks = await run_smoke()

    assert set(checks) == {"runsse", "floor"}
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
