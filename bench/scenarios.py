"""
The benchmark scenarios. Each one runs against a started server and an
open ``LoadClient`` and returns a flat dict of measurements, including the
``StreamCheck`` of what the streams received.
"""

import asyncio
import contextlib
import json
import sys
import time

from sse.tokens import mint_reva_token

from .client import LoadClient, median
from .publisher import ensure_stream
from .servers import JWT_SECRET
from .storm import StormClients
from .workload import per_user_counts, user_ids

# Seconds to wait after the last stream opened before reading RSS, so that
# the server has finished the work the connections started.
SETTLE_SECONDS = 2.0

# The broadcast burst publishes at least this many broadcasts, even when
# fewer would make as many deliveries as the per-user burst.
MIN_FANOUT_BROADCASTS = 5

# After the expected number of events arrived, wait this long for
# duplicates that would otherwise go unseen.
LINGER_SECONDS = 0.5


def tokens_for(users, tabs=1):
    """Return ``(user_id, token)`` pairs, ``tabs`` streams per user."""
    pairs = []
    for user_id in users:
        token = mint_reva_token(user_id, JWT_SECRET, ttl_seconds=24 * 3600)
        pairs.extend([(user_id, token)] * tabs)
    return pairs


async def run_publisher(nats_url, users, count, rate, broadcast=False):
    """Run ``bench.publisher`` in its own process and return its summary."""
    command = [
        sys.executable, "-m", "bench.publisher",
        "--nats", nats_url, "--users", str(len(users)), "--user-prefix", users[0][0],
        "--count", str(count), "--rate", str(rate),
    ]
    if broadcast:
        command.append("--broadcast")
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the publisher exited with {process.returncode}")
    return json.loads(output)


async def connect(server, client, pairs, settle=SETTLE_SECONDS):
    """Open the streams of ``pairs``; measure how long it took and the RSS they added."""
    idle = server.rss()
    start = time.monotonic()
    await client.open(pairs)
    seconds = time.monotonic() - start
    await asyncio.sleep(settle)
    loaded = server.rss()
    return {
        "streams": len(pairs),
        "connect_seconds": seconds,
        "connects_per_second": len(pairs) / seconds,
        "rss_idle_mib": idle / 2**20,
        "rss_streams_mib": loaded / 2**20,
        "kib_per_stream": (loaded - idle) / len(pairs) / 1024,
    }


async def per_user_events(server, client, nats_url, users, count, rate, timeout):
    """
    Publish ``count`` per-user events round robin over ``users`` at ``rate``
    per second (0: as fast as possible) and wait until every stream has its own.
    """
    client.reset()
    expected = per_user_counts(users, count)
    total = sum(expected.get(user_id, 0) for user_id, _ in client.streams)
    client_cpu, server_cpu, companion_cpu = time.process_time(), server.cpu(), server.companion_cpu()

    published = await run_publisher(nats_url, users, count, rate)
    arrived = await client.wait_for(total, timeout)
    await asyncio.sleep(LINGER_SECONDS)

    check = client.check(expected)
    window = (check.last_received - check.first_published) if check.delivered else None
    return {
        "check": check,
        "complete": arrived,
        "published": published,
        "deliveries": check.delivered,
        "seconds": window,
        "deliveries_per_second": check.delivered / window if window else None,
        "p50_ms": check.latency_ms(0.50),
        "p99_ms": check.latency_ms(0.99),
        "max_ms": check.latency_ms(1.0),
        "client_cpu_seconds": time.process_time() - client_cpu,
        "server_cpu_seconds": server.cpu() - server_cpu,
        "companion_cpu_seconds": _companion_cpu_since(server, companion_cpu),
    }


async def broadcasts(server, client, nats_url, rounds, timeout):
    """Publish ``rounds`` broadcasts one after another; measure when the last stream had each."""
    times_ms = []
    checks = []
    for _ in range(rounds):
        client.reset()
        await run_publisher(nats_url, ["u"], 1, 0, broadcast=True)
        await client.wait_for(len(client.streams), timeout)
        await asyncio.sleep(LINGER_SECONDS)
        check = client.check({}, broadcasts=1)
        checks.append(check)
        if check.delivered:
            times_ms.append((check.last_received - check.first_published) * 1000)
    return {
        "check": _merge(checks),
        "last_stream_ms": median(times_ms),
        "p50_ms": median([check.latency_ms(0.5, broadcast=True) for check in checks]),
    }


async def broadcast_burst(server, client, nats_url, count, timeout):
    """
    Publish ``count`` broadcasts as fast as possible, so that every
    published event makes one delivery per stream and the publisher cannot
    be what limits the deliveries per second.
    """
    client.reset()
    client_cpu, server_cpu, companion_cpu = time.process_time(), server.cpu(), server.companion_cpu()
    published = await run_publisher(nats_url, ["u"], count, 0, broadcast=True)
    arrived = await client.wait_for(count * len(client.streams), timeout)
    await asyncio.sleep(LINGER_SECONDS)

    check = client.check({}, broadcasts=count)
    window = (check.last_received - check.first_published) if check.delivered else None
    return {
        "check": check,
        "complete": arrived,
        "published": published,
        "broadcasts": count,
        "deliveries": check.delivered,
        "seconds": window,
        "deliveries_per_second": check.delivered / window if window else None,
        "p99_ms": check.latency_ms(0.99, broadcast=True),
        "client_cpu_seconds": time.process_time() - client_cpu,
        "server_cpu_seconds": server.cpu() - server_cpu,
        "companion_cpu_seconds": _companion_cpu_since(server, companion_cpu),
    }


async def reconnect_storm(server, nats_url, streams, processes, timeout):
    """
    Open ``streams`` streams at the same moment from ``processes`` client
    processes, each opening its share all at once. Measure when the last
    stream had its first bytes and its first comment, and why any failed.
    Then publish one broadcast, which every opened stream must receive.
    Streams that failed to open count as missing that broadcast.
    """
    clients = StormClients(server.port, streams, processes, timeout, server.event_format)
    try:
        await clients.start()
        server_cpu, companion_cpu, started = server.cpu(), server.companion_cpu(), time.monotonic()
        result = await clients.storm()
        elapsed = time.monotonic() - started
        result["server_cpu_seconds"] = server.cpu() - server_cpu
        result["server_cpu_percent"] = 100 * result["server_cpu_seconds"] / elapsed
        result["companion_cpu_seconds"] = _companion_cpu_since(server, companion_cpu)
        if result["companion_cpu_seconds"] is not None:
            result["companion_cpu_percent"] = 100 * result["companion_cpu_seconds"] / elapsed
        await run_publisher(nats_url, ["u"], 1, 0, broadcast=True)
        check = await clients.check(1, timeout, LINGER_SECONDS)
    finally:
        await clients.close()

    check.expected += result["failed"]
    check.missing += result["failed"]
    result["check"] = check
    if result["seconds"]:
        result["client_cpu_percent_max"] = 100 * result["client_cpu_seconds_max"] / result["seconds"]
    return result


def _companion_cpu_since(server, before):
    """Return the CPU seconds that the server's companions (its Redis) used since ``before``, or None."""
    now = server.companion_cpu()
    return None if now is None or before is None else now - before


def _merge(checks):
    merged = checks[0]
    for check in checks[1:]:
        for name in ("expected", "delivered", "missing", "duplicates", "out_of_order", "unexpected"):
            setattr(merged, name, getattr(merged, name) + getattr(check, name))
        merged.closed_streams = max(merged.closed_streams, check.closed_streams)
    return merged


def _not_profiled(scenario):
    return contextlib.AsyncExitStack()


async def standard_set(
    server, nats_url, streams, *, rate, duration, burst, rounds, tabs, timeout, storm_clients,
    settle=SETTLE_SECONDS, profile=None, results=None,
):
    """
    Run every standard scenario against one started server with ``streams``
    streams: connect, memory, per-user latency at ``rate``, maximum
    throughput over a burst of ``burst`` per-user events, broadcast, a
    burst of broadcasts with about as many deliveries, ``tabs`` tabs per
    user, and a reconnect storm from ``storm_clients`` client processes.
    ``settle`` is the pause in seconds before RSS is read and between the
    two sets of streams. ``profile(scenario)``, if given, returns an async
    context manager that the burst and broadcast scenarios run in.
    Each scenario's result goes into ``results`` (a new dict if not given)
    as soon as it is known, so that a caller that stops a slow set keeps
    the scenarios that finished.
    """
    profile = profile or _not_profiled
    await ensure_stream(nats_url)
    results = {} if results is None else results

    client = LoadClient(server.port, event_format=server.event_format)
    users = user_ids(streams)
    results["connect"] = await connect(server, client, tokens_for(users), settle)
    results["latency"] = await per_user_events(server, client, nats_url, users, int(rate * duration), rate, timeout)
    async with profile("burst"):
        results["burst"] = await per_user_events(server, client, nats_url, users, burst, 0, timeout)
    async with profile("broadcast"):
        results["broadcast"] = await broadcasts(server, client, nats_url, rounds, timeout)
    fanout = max(MIN_FANOUT_BROADCASTS, burst // streams)
    async with profile("fanout"):
        results["fanout"] = await broadcast_burst(server, client, nats_url, fanout, timeout)
    client.close()
    await asyncio.sleep(settle)

    client = LoadClient(server.port, event_format=server.event_format)
    tab_users = user_ids(max(1, streams // tabs), prefix="t")
    results["tabs_connect"] = await connect(server, client, tokens_for(tab_users, tabs), settle)
    results["tabs"] = await per_user_events(server, client, nats_url, tab_users, int(rate * duration), rate, timeout)
    client.close()
    await asyncio.sleep(settle)

    results["storm"] = await reconnect_storm(server, nats_url, streams, storm_clients, timeout)
    await asyncio.sleep(settle)
    return results


async def soak(server, nats_url, streams, *, minutes, rate, sample_seconds=10.0, warmup_seconds=60.0, timeout=120.0):
    """
    Hold ``streams`` streams for ``minutes`` under per-user traffic at
    ``rate`` events per second plus one broadcast every ``sample_seconds``,
    sampling the server's RSS every ``sample_seconds``.
    """
    await ensure_stream(nats_url)
    client = LoadClient(server.port, event_format=server.event_format)
    users = user_ids(streams)
    connected = await connect(server, client, tokens_for(users))

    seconds = minutes * 60
    count = int(rate * seconds)
    broadcast_count = max(1, int(seconds / sample_seconds))
    client_cpu = time.process_time()
    started = time.monotonic()
    publishers = asyncio.gather(
        run_publisher(nats_url, users, count, rate),
        run_publisher(nats_url, ["u"], broadcast_count, 1 / sample_seconds, broadcast=True),
    )
    samples = []
    while not publishers.done():
        samples.append((time.monotonic() - started, server.rss() / 2**20))
        await asyncio.wait([publishers], timeout=sample_seconds)
    published = publishers.result()

    expected = per_user_counts(users, count)
    total = sum(expected.values()) + broadcast_count * len(client.streams)
    arrived = await client.wait_for(total, timeout)
    await asyncio.sleep(LINGER_SECONDS)
    samples.append((time.monotonic() - started, server.rss() / 2**20))
    check = client.check(expected, broadcasts=broadcast_count)
    client.close()

    after_warmup = [rss for at, rss in samples if at >= min(warmup_seconds, seconds / 3)]
    return {
        "connect": connected,
        "check": check,
        "complete": arrived,
        "published": published,
        "samples": samples,
        "rss_after_warmup_mib": after_warmup[0] if after_warmup else None,
        "rss_end_mib": samples[-1][1],
        "growth_after_warmup_mib": (samples[-1][1] - after_warmup[0]) if after_warmup else None,
        "p50_ms": check.latency_ms(0.5),
        "p99_ms": check.latency_ms(0.99),
        "broadcast_p50_ms": check.latency_ms(0.5, broadcast=True),
        "broadcast_p99_ms": check.latency_ms(0.99, broadcast=True),
        "client_cpu_seconds": time.process_time() - client_cpu,
        "seconds": time.monotonic() - started,
    }
