"""
End-to-end recovery of the bridge when JetStream loses its consumer or
the NATS server restarts. Each test runs its own nats-server.
"""

import asyncio

import nats
import pytest

from sse.embedded_nats import EmbeddedNATS
from sse.wire import encode_envelope

from .conftest import token_for
from .http import request
from .service import ServiceProcess, free_port


@pytest.fixture
def own_nats(tmp_path):
    server = EmbeddedNATS(f"nats://127.0.0.1:{free_port()}", store_dir=str(tmp_path / "jetstream"))
    server.start()
    yield server
    server.stop()


async def open_stream(service, user_id):
    response = await request(service.http_port, "/sse", [("x-access-token", token_for(user_id))])
    assert response.status == 200
    assert await response.read_block() == b": stream opened\n\n"
    return response


async def publish(url, data):
    connection = await nats.connect(url)
    try:
        return (await connection.jetstream().publish("main-queue", data)).seq
    finally:
        await connection.close()


async def wait_ready(service, timeout=20.0):
    await asyncio.to_thread(service.wait_until, lambda: service.get("/readyz")[0] == 200, timeout, "ready")


async def test_deleted_consumer_recreated_without_loss(own_nats, user_id):
    url = f"nats://127.0.0.1:{own_nats.port}"
    service = ServiceProcess(url).start()
    try:
        stream = await open_stream(service, user_id)
        before = await publish(url, encode_envelope([user_id], "t", "before"))
        assert await stream.read_event() == b"id: %d\nevent: t\ndata: before\n\n" % before

        connection = await nats.connect(url)
        (consumer,) = await connection.jetstream().consumers_info("main-queue")
        await connection.jetstream().delete_consumer("main-queue", consumer.name)
        await connection.close()
        during = await publish(url, encode_envelope([user_id], "t", "while the consumer was gone"))

        assert await stream.read_event(timeout=15) == b"id: %d\nevent: t\ndata: while the consumer was gone\n\n" % during
        await stream.close()
    finally:
        assert service.stop() == 0
    assert "resuming after stream sequence %d" % before in service.output()


async def test_nats_restart_keeps_streams_and_delivery(own_nats, user_id):
    url = f"nats://127.0.0.1:{own_nats.port}"
    service = ServiceProcess(url).start()
    try:
        stream = await open_stream(service, user_id)

        own_nats.stop()
        await asyncio.to_thread(service.wait_until, lambda: service.get("/readyz")[0] == 503, 10, "unready")
        own_nats.start()
        await wait_ready(service)
        sequence = await publish(url, encode_envelope([user_id], "t", "after the restart"))

        assert await stream.read_event(timeout=15) == b"id: %d\nevent: t\ndata: after the restart\n\n" % sequence
        await stream.close()
    finally:
        assert service.stop() == 0


async def test_reset_stream_consumed_from_start(tmp_path, user_id):
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    first = EmbeddedNATS(url, store_dir=str(tmp_path / "first"))
    first.start()
    service = ServiceProcess(url).start()
    try:
        stream = await open_stream(service, user_id)
        for number in range(3):
            sequence = await publish(url, encode_envelope([user_id], "t", str(number)))
            assert await stream.read_event() == b"id: %d\nevent: t\ndata: %d\n\n" % (sequence, number)

        # A new server with an empty store: the stream starts again at 1.
        first.stop()
        second = EmbeddedNATS(url, store_dir=str(tmp_path / "second"))
        second.start()
        try:
            await wait_ready(service)
            sequence = await publish(url, encode_envelope([user_id], "t", "after the reset"))

            assert sequence == 1
            assert await stream.read_event(timeout=15) == b"id: 1\nevent: t\ndata: after the reset\n\n"
            await stream.close()
        finally:
            assert service.stop() == 0
            second.stop()
    finally:
        first.stop()
