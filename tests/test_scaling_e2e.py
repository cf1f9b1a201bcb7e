"""
End-to-end tests of the two ways to run several processes, on the real
NATS server and the real Redis at 127.0.0.1:6379.

1. Per-instance consumers: every ``runsse`` has its own consumer and its
   own in-memory channel layer.
2. Shared channel layer: ``--http-only`` processes serve streams and
   ``--bridge-only`` processes share one durable consumer, all on Redis.
"""

import asyncio
import re
import signal
import subprocess
import time
import uuid

import pytest
import redis

from sse.wire import encode_envelope

from .conftest import token_for
from .http import request
from .service import ServiceProcess, free_port
from .test_delivery import wait_for_metric

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module", autouse=True)
def redis_running():
    """Fail loudly, not skip, when the Redis server these tests need is missing."""
    redis.Redis.from_url(REDIS_URL).ping()


async def open_stream(service, user_id):
    response = await request(service.http_port, "/sse", [("x-access-token", token_for(user_id))])
    assert response.status == 200
    assert await response.read_block() == b": stream opened\n\n"
    return response


async def publish_numbers(jetstream, user_id, numbers):
    sequences = []
    for number in numbers:
        sequences.append((await jetstream.publish("main-queue", encode_envelope([user_id], "n", str(number)))).seq)
    return sequences


async def assert_receives(stream, sequences, numbers, timeout=10):
    for sequence, number in zip(sequences, numbers):
        assert await stream.read_event(timeout=timeout) == b"id: %d\nevent: n\ndata: %d\n\n" % (sequence, number)


async def assert_nothing_more(stream):
    with pytest.raises(asyncio.TimeoutError):
        await stream.read_event(timeout=0.5)


async def test_per_instance_consumers(nats_url, jetstream, user_id):
    services = [ServiceProcess(nats_url).start() for _ in range(2)]
    try:
        streams = [await open_stream(service, user_id) for service in services]

        numbers = range(1, 51)
        sequences = await publish_numbers(jetstream, user_id, numbers)

        for stream in streams:
            await assert_receives(stream, sequences, numbers)
            await assert_nothing_more(stream)
            await stream.close()
    finally:
        for service in services:
            assert service.stop() == 0


@pytest.fixture
def shared_mode(nats_url, jetstream):
    """Two --http-only and two --bridge-only processes on Redis, with a durable consumer of their own."""
    consumer = f"sse-test-{uuid.uuid4().hex[:8]}"
    environment = {
        "SSE_CHANNEL_LAYER_URL": REDIS_URL,
        "SSE_CONSUMER_NAME": consumer,
        "SSE_EVENTS_ACK_WAIT": "2s",
    }
    bridges = [ServiceProcess(nats_url, args=["--bridge-only"], **environment).start() for _ in range(2)]
    servers = [ServiceProcess(nats_url, args=["--http-only"], **environment).start() for _ in range(2)]
    yield servers, bridges, consumer
    for process in servers + bridges:
        if process.process.poll() is None:
            assert process.stop() == 0, process.output()


async def delete_consumer(jetstream, name):
    await jetstream.delete_consumer("main-queue", name)


async def test_shared_layer_delivers_once_in_order(shared_mode, jetstream, user_id):
    servers, bridges, consumer = shared_mode
    try:
        streams = [await open_stream(server, user_id) for server in servers]

        numbers = range(1, 51)
        sequences = await publish_numbers(jetstream, user_id, numbers)

        for stream in streams:
            await assert_receives(stream, sequences, numbers)
            await assert_nothing_more(stream)
            await stream.close()
        delivered = sum(bridge.metric('sse_events_received_total{result="delivered"}') for bridge in bridges)
        assert delivered == 50
    finally:
        await delete_consumer(jetstream, consumer)


async def test_killed_bridge_loses_nothing(shared_mode, jetstream, user_id):
    servers, bridges, consumer = shared_mode
    try:
        streams = [await open_stream(server, user_id) for server in servers]
        first = range(1, 26)
        first_sequences = await publish_numbers(jetstream, user_id, first)
        for stream in streams:
            await assert_receives(stream, first_sequences, first)

        busy = max(bridges, key=lambda bridge: bridge.metric('sse_events_received_total{result="delivered"}'))
        busy.process.send_signal(signal.SIGKILL)
        busy.process.wait()
        second = range(26, 51)
        second_sequences = await publish_numbers(jetstream, user_id, second)

        # The survivor takes the lead once the dead bridge's key expires. It
        # rewinds the consumer to the acknowledgement floor, so the events
        # the dead bridge had fetched but not acknowledged come again, and
        # the streams skip the copies they already wrote.
        for stream in streams:
            await assert_receives(stream, second_sequences, second, timeout=15)
            await assert_nothing_more(stream)
            await stream.close()
    finally:
        await delete_consumer(jetstream, consumer)


def test_bridge_only_refused_with_in_memory_layer(nats_url):
    service = ServiceProcess(nats_url, args=["--bridge-only"])
    with pytest.raises(AssertionError) as failure:
        service.start(ready_timeout=10)

    assert service.process.wait(5) == 1
    assert "the channel layer InMemoryChannelLayer reaches only this process" in str(failure.value)
    assert "set SSE_CHANNEL_LAYER_URL=redis://... to run them apart" in str(failure.value)


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test on a free port, which the test may stop and start again."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]

    def start():
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                return process
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    server = {"process": start(), "start": start, "url": f"redis://127.0.0.1:{port}/0"}
    yield server
    server["process"].terminate()
    server["process"].wait()


async def test_redis_outage_tells_clients(nats_url, jetstream, own_redis, user_id):
    consumer = f"sse-test-{uuid.uuid4().hex[:8]}"
    environment = {"SSE_CHANNEL_LAYER_URL": own_redis["url"], "SSE_CONSUMER_NAME": consumer, "SSE_EVENTS_ACK_WAIT": "2s"}
    bridge = ServiceProcess(nats_url, args=["--bridge-only"], **environment).start()
    server = ServiceProcess(nats_url, args=["--http-only"], **environment).start()
    try:
        stream = await open_stream(server, user_id)
        leaving = await open_stream(server, user_id + "-leaving")
        (first,) = await publish_numbers(jetstream, user_id, [1])
        await assert_receives(stream, [first], [1])

        own_redis["process"].terminate()
        own_redis["process"].wait()
        await asyncio.to_thread(server.wait_until, lambda: server.get("/readyz")[0] == 503, 10, "unready")
        assert b"redis: not ready" in server.get("/readyz")[1]
        # A client that leaves while Redis is down must not stay counted.
        await leaving.close()
        during = await publish_numbers(jetstream, user_id, [2, 3])
        own_redis["process"] = own_redis["start"]()

        # Redis pub/sub keeps nothing for a disconnected subscriber, so
        # once Redis is back the stream ends with a retry: and the client
        # reconnects with its Last-Event-ID. Anything written before that
        # is in order.
        blocks = [await stream.read_block(timeout=30)]
        while not blocks[-1].startswith(b"retry:"):
            blocks.append(await stream.read_block(timeout=30))
        assert re.fullmatch(rb"retry: \d+\n\n", blocks[-1])
        assert await stream.read_to_end() == b""
        received = blocks[:-1]
        expected = [b"id: %d\nevent: n\ndata: %d\n\n" % (sequence, number) for sequence, number in zip(during, [2, 3])]
        assert received == expected[: len(received)]
        await stream.close()

        last_id = first if not received else during[len(received) - 1]
        await asyncio.to_thread(server.wait_until, lambda: server.get("/readyz")[0] == 200, 10, "ready")
        stream = await request(server.http_port, "/sse", [("x-access-token", token_for(user_id)), ("Last-Event-ID", str(last_id))])
        assert await stream.read_block() == b": stream opened\n\n"
        # The events the stream did not get come from the JetStream stream.
        assert [await stream.read_event() for _ in expected[len(received) :]] == expected[len(received) :]
        after = await publish_numbers(jetstream, user_id, [4])
        await assert_receives(stream, after, [4], timeout=10)
        assert await wait_for_metric(server, "sse_connections_active", 1) == 1
        await stream.close()
    finally:
        assert server.stop() == 0, server.output()
        assert bridge.stop() == 0, bridge.output()
        await delete_consumer(jetstream, consumer)


async def test_shared_layer_resume_on_other_process(shared_mode, jetstream, user_id):
    servers, _, consumer = shared_mode
    try:
        stream = await open_stream(servers[0], user_id)
        seen = await publish_numbers(jetstream, user_id, [1])
        await assert_receives(stream, seen, [1])
        await stream.close()
        missed = await publish_numbers(jetstream, user_id, [2, 3])

        headers = [("x-access-token", token_for(user_id)), ("Last-Event-ID", str(seen[0]))]
        stream = await request(servers[1].http_port, "/sse", headers)
        assert await stream.read_block() == b": stream opened\n\n"

        await assert_receives(stream, missed, [2, 3])
        live = await publish_numbers(jetstream, user_id, [4])
        await assert_receives(stream, live, [4])
        await assert_nothing_more(stream)
        await stream.close()
    finally:
        await delete_consumer(jetstream, consumer)
