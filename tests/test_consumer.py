"""
Unit tests of the stream consumer with Channels' in-process communicator.
The same behaviour is tested over sockets in the end-to-end modules.
"""

import pytest
from channels.layers import get_channel_layer
from channels.testing import ApplicationCommunicator

from sse import metrics
from sse.consumers import EventStreamConsumer
from sse.groups import BROADCAST_GROUP, user_group
from sse.tokens import mint_reva_token

SECRET = "consumer-test-secret-" + "0123456789abcdef" * 4


def stream_scope(token=None, method="GET"):
    headers = [(b"x-access-token", token.encode())] if token else []
    return {"type": "http", "method": method, "path": "/sse", "headers": headers}


async def open_stream(user_id, method="GET"):
    communicator = ApplicationCommunicator(
        EventStreamConsumer.as_asgi(), stream_scope(mint_reva_token(user_id, SECRET), method)
    )
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(1)
    return communicator, start


@pytest.fixture(autouse=True)
def jwt_secret(settings):
    settings.SSE = {"JWT_SECRET": SECRET}


async def test_stream_joins_user_and_broadcast_groups():
    layer = get_channel_layer()
    communicator, start = await open_stream("alice")

    assert start["status"] == 200
    assert await communicator.receive_output(1) == {
        "type": "http.response.body",
        "body": b": stream opened\n\n",
        "more_body": True,
    }
    assert len(layer.groups[user_group("alice")]) == 1
    assert len(layer.groups[BROADCAST_GROUP]) == 1

    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(1)
    assert user_group("alice") not in layer.groups
    assert BROADCAST_GROUP not in layer.groups


async def test_group_event_written_as_is():
    layer = get_channel_layer()
    communicator, _ = await open_stream("bob")
    await communicator.receive_output(1)

    await layer.group_send(user_group("bob"), {"type": "sse.event", "frame": b"id: 1\ndata: x\n\n"})

    assert await communicator.receive_output(1) == {
        "type": "http.response.body",
        "body": b"id: 1\ndata: x\n\n",
        "more_body": True,
    }
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(1)


async def test_overflow_ends_stream_and_counts_drops():
    layer = get_channel_layer()
    dropped = metrics.EVENTS_DROPPED.labels(reason="slow_client")
    before = dropped._value.get()
    communicator, _ = await open_stream("carol")
    await communicator.receive_output(1)

    (channel,) = layer.groups[user_group("carol")]

    await layer.send(channel, {"type": "sse.overflow", "dropped": 17})

    assert await communicator.receive_output(1) == {"type": "http.response.body", "body": b"", "more_body": False}
    await communicator.wait(1)
    assert dropped._value.get() == before + 17
    assert user_group("carol") not in layer.groups


async def test_keepalive_comment_on_timer(settings):
    settings.SSE = {"JWT_SECRET": SECRET, "KEEPALIVE_INTERVAL": "50ms"}
    communicator, _ = await open_stream("dave")
    await communicator.receive_output(1)

    for _ in range(2):
        assert await communicator.receive_output(1) == {
            "type": "http.response.body",
            "body": b": keepalive\n\n",
            "more_body": True,
        }
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(1)
    assert await communicator.receive_nothing(0.1)


async def test_head_answers_without_stream():
    layer = get_channel_layer()
    communicator, start = await open_stream("erin", method="HEAD")

    assert start["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    assert await communicator.receive_output(1) == {"type": "http.response.body", "body": b"", "more_body": False}
    await communicator.wait(1)
    assert user_group("erin") not in layer.groups


async def test_cancelled_consumer_leaves_groups():
    layer = get_channel_layer()
    gauge = metrics.CONNECTIONS_ACTIVE._value
    before = gauge.get()
    communicator, _ = await open_stream("frank")
    await communicator.receive_output(1)
    assert gauge.get() == before + 1

    communicator.future.cancel()
    await communicator.wait(1)

    assert user_group("frank") not in layer.groups
    assert gauge.get() == before



async def test_send_local_reaches_stream():
    import sse

    communicator, _ = await open_stream("grace")
    await communicator.receive_output(1)

    await sse.asend_local(["grace"], "local", "no NATS\nneeded")

    assert await communicator.receive_output(1) == {
        "type": "http.response.body",
        "body": b"event: local\ndata: no NATS\ndata: needed\n\n",
        "more_body": True,
    }
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(1)
