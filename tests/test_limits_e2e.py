"""
End-to-end tests of the limits that protect the service: streams per
user, message size, and clients that stop reading.
"""

import asyncio
import json
import socket
import time

import pytest

from sse.wire import encode_envelope

from .conftest import token_for
from .http import Response, request
from .service import ServiceProcess


async def open_stream(service, user_id):
    response = await request(service.http_port, "/sse", [("x-access-token", token_for(user_id))])
    assert response.status == 200
    assert await response.read_block() == b": stream opened\n\n"
    return response


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def limited_service(nats_url):
    process = ServiceProcess(
        nats_url,
        SSE_MAX_CONNECTIONS_PER_USER="2",
        SSE_MAX_MESSAGE_SIZE="1KiB",
        SSE_MAX_BUFFERED_EVENTS="200",
        SSE_MAX_BUFFERED_BYTES="1MiB",
    ).start()
    yield process
    assert process.stop() == 0, process.output()


async def test_streams_per_user_limited(limited_service, user_id):
    first = await open_stream(limited_service, user_id)
    second = await open_stream(limited_service, user_id)

    third = await request(limited_service.http_port, "/sse", [("x-access-token", token_for(user_id))])
    body = await third.read_to_end()
    other_user = await open_stream(limited_service, user_id + "-other")

    assert third.status == 429
    assert third.header("retry-after") == "30"
    assert json.loads(body) == {"code": "too_many_streams", "detail": "This user already has 2 open streams."}

    await first.close()
    for _ in range(100):
        retry = await request(limited_service.http_port, "/sse", [("x-access-token", token_for(user_id))])
        if retry.status == 200:
            break
        await retry.close()
        await asyncio.sleep(0.05)
    assert retry.status == 200
    for stream in (second, retry, other_user, third):
        await stream.close()


async def test_unlimited_streams_with_zero(nats_url, user_id):
    service = ServiceProcess(nats_url, SSE_MAX_CONNECTIONS_PER_USER="0").start()
    try:
        streams = [await open_stream(service, user_id) for _ in range(25)]
        assert service.metric("sse_connections_active") == 25
        for stream in streams:
            await stream.close()
    finally:
        assert service.stop() == 0


async def test_too_large_message_dropped_and_acknowledged(limited_service, jetstream, user_id):
    stream = await open_stream(limited_service, user_id)
    before = limited_service.metric('sse_events_dropped_total{reason="too_large"}')

    await jetstream.publish("main-queue", encode_envelope([user_id], "big", b"x" * 1025))
    fits = (await jetstream.publish("main-queue", encode_envelope([user_id], "small", b"y" * 1024))).seq

    assert await stream.read_event() == b"id: %d\nevent: small\ndata: %s\n\n" % (fits, b"y" * 1024)
    assert limited_service.metric('sse_events_dropped_total{reason="too_large"}') == before + 1
    (consumer,) = await jetstream.consumers_info("main-queue")
    assert consumer.num_ack_pending == 0
    assert consumer.num_redelivered == 0
    assert "Dropped a big event of 1025 bytes, more than SSE_MAX_MESSAGE_SIZE (1024 bytes)" in limited_service.output()
    await stream.close()


async def open_unread_stream(port, user_id):
    """Open a stream on a socket with a tiny receive buffer, and never read from it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    request_line = f"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nx-access-token: {token_for(user_id)}\r\n\r\n"
    writer.write(request_line.encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    writer.transport.pause_reading()
    return Response(reader, writer, 200, [("transfer-encoding", "chunked")])


async def test_slow_client_bounded_and_others_on_time(nats_url, jetstream, user_id):
    # No replay history, which would keep the 20 MB on purpose.
    service = ServiceProcess(
        nats_url, SSE_MAX_BUFFERED_EVENTS="1000", SSE_MAX_BUFFERED_BYTES="4MiB", SSE_REPLAY_MAX_EVENTS="0"
    ).start()
    try:
        slow_user, fast_user = user_id + "-slow", user_id + "-fast"
        slow = await open_unread_stream(service.http_port, slow_user)
        fast = await open_stream(service, fast_user)
        rss_before = rss_kib(service.process.pid)
        chunk = b"z" * 10_000

        # 2,000 events of 10 kB, 20 MB in all, for a client that reads
        # nothing; every 100th event, one for a client that reads.
        delays = []
        for number in range(2000):
            await jetstream.publish("main-queue", encode_envelope([slow_user], "bulk", chunk))
            if number % 100 == 99:
                published = time.monotonic()
                await jetstream.publish("main-queue", encode_envelope([fast_user], "tick", str(number)))
                block = await fast.read_event(timeout=5)
                delays.append(time.monotonic() - published)
                assert block.endswith(b"event: tick\ndata: %d\n\n" % number)

        rss_growth_mib = (rss_kib(service.process.pid) - rss_before) / 1024
        dropped = service.metric('sse_events_dropped_total{reason="slow_client"}')
        active = service.metric("sse_connections_active")
    finally:
        assert service.stop() == 0

    assert max(delays) < 1.0
    # Without the bound, the 20 MB would pile up in the process.
    assert rss_growth_mib < 16
    assert dropped > 0
    assert active == 1
    assert "Closed a stream whose client could not keep up" in service.output()
    slow.reader._transport.resume_reading()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError, EOFError)):
        await slow.read_to_end(timeout=5)
    await slow.close()
    await fast.close()
