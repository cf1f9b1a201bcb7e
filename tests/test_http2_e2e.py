"""
End-to-end tests of HTTP/2 on the TLS stream server.

Browsers open at most six HTTP/1.1 connections per host, so these tests
open several streams on one HTTP/2 connection. They also reset one
stream, stop reading one, and leave one idle for longer than Twisted's
idle timeout.
"""

import asyncio
import ssl
import time

import pytest

from sse.wire import encode_envelope

from .conftest import token_for
from .http2 import Connection
from .service import ServiceProcess

OPENING = b": stream opened\n\n"


@pytest.fixture(scope="module")
def service(nats_url):
    """A ``runsse`` process serving TLS with its generated self-signed certificate."""
    process = ServiceProcess(nats_url, OCIS_HTTP_TLS_ENABLED="true").start()
    yield process
    assert process.stop() == 0, process.output()


async def open_connection(service):
    """Connect to ``service`` with ALPN h2, trusting the certificate it serves."""
    served = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", service.http_port))
    return await Connection.open("127.0.0.1", service.http_port, ssl.create_default_context(cadata=served))


async def open_stream(connection, user_id):
    stream = await connection.request("/sse", [("x-access-token", token_for(user_id))])
    assert stream.status == 200
    assert await stream.read_block() == OPENING
    return stream


async def publish(jetstream, user_id, text):
    return (await jetstream.publish("main-queue", encode_envelope([user_id], "n", text))).seq


def event(sequence, text):
    return b"id: %d\nevent: n\ndata: %s\n\n" % (sequence, text.encode())


async def wait_active(service, expected, timeout=5.0):
    """Wait until the service counts ``expected`` open streams."""
    deadline = time.monotonic() + timeout
    while True:
        active = await asyncio.to_thread(service.metric, "sse_connections_active")
        if active == expected:
            return
        assert time.monotonic() < deadline, f"sse_connections_active is {active}, expected {expected}"
        await asyncio.sleep(0.05)


async def test_eight_streams_one_connection(service, jetstream):
    users = [f"{prefix}-{time.monotonic_ns()}" for prefix in ("alice", "bob")]
    connection = await open_connection(service)
    try:
        streams = {user: [await open_stream(connection, user) for _ in range(4)] for user in users}
        await wait_active(service, 8)

        sequences = {user: await publish(jetstream, user, f"for {user}") for user in users}

        for user in users:
            for stream in streams[user]:
                assert await stream.read_event() == event(sequences[user], f"for {user}")
        first = streams[users[0]][0]
        assert connection.alpn_protocol == "h2"
        assert len(connection.streams) == 8
        assert first.header("content-type") == "text/event-stream; charset=utf-8"
        assert first.header("cache-control") == "no-cache"
        assert first.header("transfer-encoding") is None
    finally:
        await connection.close()
    await wait_active(service, 0)


async def test_reset_stream_ends_on_server(service, jetstream, user_id):
    connection = await open_connection(service)
    try:
        cancelled = await open_stream(connection, user_id)
        remaining = await open_stream(connection, user_id)
        await wait_active(service, 2)

        await cancelled.reset()
        await wait_active(service, 1)
        sequence = await publish(jetstream, user_id, "after the reset")

        assert await remaining.read_event() == event(sequence, "after the reset")
        with pytest.raises(asyncio.TimeoutError):
            await cancelled.read_event(timeout=0.5)
        assert connection.goaway_code is None
    finally:
        await connection.close()
    await wait_active(service, 0)


async def test_stalled_stream_reset_alone(nats_url, jetstream, user_id):
    """
    A stream whose client stops reading is reset once its HTTP/2 window and
    SSE_MAX_BUFFERED_EVENTS are full, while a stream on the same connection
    that is read gets every event.
    """
    service = ServiceProcess(nats_url, OCIS_HTTP_TLS_ENABLED="true", SSE_MAX_BUFFERED_EVENTS="4").start()
    connection = await open_connection(service)
    try:
        stalled = await open_stream(connection, user_id)
        reading = await open_stream(connection, user_id)
        stalled.reading = False
        await wait_active(service, 2)

        # 12 events of 16,000 bytes: four fill the 65,535-byte window of
        # the stalled stream, five more overflow its buffer. Each is read
        # before the next is published, so that the buffer limit of 4 never
        # reaches the reading stream, however busy the machine.
        for number in range(12):
            text = f"{number:02d}" + "x" * 15998
            sequence = await publish(jetstream, user_id, text)
            assert await reading.read_event() == event(sequence, text)

        reset_code = await stalled.wait_reset()
        await wait_active(service, 1)
        dropped = await asyncio.to_thread(service.metric, 'sse_events_dropped_total{reason="slow_client"}')
        live = await publish(jetstream, user_id, "still open")
        assert await reading.read_event() == event(live, "still open")
        assert connection.goaway_code is None
    finally:
        await connection.close()
        assert service.stop() == 0, service.output()

    assert reset_code == 0  # NO_ERROR, what Twisted sends for an aborted stream
    assert dropped >= 5
    assert "Closed a stream whose client could not keep up" in service.output()


async def test_idle_stream_outlives_idle_timeout(service, jetstream, user_id):
    """Twisted closes HTTP/2 connections after 60 s without frames; an open stream must not be."""
    connection = await open_connection(service)
    try:
        stream = await open_stream(connection, user_id)

        await asyncio.sleep(62)
        sequence = await publish(jetstream, user_id, "after a quiet minute")

        assert await stream.read_event() == event(sequence, "after a quiet minute")
        assert connection.goaway_code is None
        assert not connection.closed
    finally:
        await connection.close()
