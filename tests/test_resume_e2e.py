"""
End-to-end tests of reconnecting with Last-Event-ID and of streams that
end when their token expires.
"""

import asyncio
import json
import time

import pytest

from sse.wire import encode_envelope

from .conftest import token_for
from .http import request
from .service import ServiceProcess

STREAM_RESET = b"event: stream-reset\ndata: \n\n"


async def open_stream(service, user_id, headers=(), path="/sse", token=None):
    response = await request(service.http_port, path, [("x-access-token", token or token_for(user_id)), *headers])
    assert response.status == 200
    assert await response.read_block() == b": stream opened\n\n"
    return response


async def publish(jetstream, user_id, text):
    return (await jetstream.publish("main-queue", encode_envelope([user_id], "n", text))).seq


def event(sequence, text):
    return b"id: %d\nevent: n\ndata: %s\n\n" % (sequence, text.encode())


async def test_reconnect_replays_missed_events(service, jetstream, user_id):
    stream = await open_stream(service, user_id)
    seen = await publish(jetstream, user_id, "seen")
    assert await stream.read_event() == event(seen, "seen")
    await stream.close()

    missed = [await publish(jetstream, user_id, f"missed {number}") for number in range(3)]
    await publish(jetstream, user_id + "-other", "not for this user")
    await asyncio.sleep(0.2)
    stream = await open_stream(service, user_id, [("Last-Event-ID", str(seen))])

    for number, sequence in enumerate(missed):
        assert await stream.read_event() == event(sequence, f"missed {number}")
    live = await publish(jetstream, user_id, "live")
    assert await stream.read_event() == event(live, "live")
    await stream.close()


async def test_last_event_id_query_parameter(service, jetstream, user_id):
    seen = await publish(jetstream, user_id, "seen")
    missed = await publish(jetstream, user_id, "missed")
    await asyncio.sleep(0.2)

    stream = await open_stream(service, user_id, path=f"/sse?lastEventId={seen}")

    assert await stream.read_event() == event(missed, "missed")
    await stream.close()


async def test_no_last_event_id_no_old_events(service, jetstream, user_id):
    await publish(jetstream, user_id, "old")
    await asyncio.sleep(0.2)
    stream = await open_stream(service, user_id)

    live = await publish(jetstream, user_id, "live")

    assert await stream.read_event() == event(live, "live")
    await stream.close()


async def test_broadcast_replayed(service, jetstream, user_id):
    seen = await publish(jetstream, user_id, "seen")
    broadcast = (await jetstream.publish("main-queue", encode_envelope(["all"], "n", "to everyone"))).seq
    await asyncio.sleep(0.2)

    stream = await open_stream(service, user_id, [("Last-Event-ID", str(seen))])

    assert await stream.read_event() == event(broadcast, "to everyone")
    await stream.close()


@pytest.mark.parametrize("last_event_id", ["not-a-number", "9" * 100, "99999999999", "-5", "\u00b2"], ids=["text", "too-long", "future", "negative", "superscript-digit"])
async def test_unusable_last_event_id_resets(service, jetstream, user_id, last_event_id):
    stream = await open_stream(service, user_id, [("Last-Event-ID", last_event_id)])

    assert await stream.read_block() == STREAM_RESET
    live = await publish(jetstream, user_id, "live")
    assert await stream.read_event() == event(live, "live")
    await stream.close()


async def test_id_older_than_history_resets(nats_url, jetstream, user_id):
    service = ServiceProcess(nats_url, SSE_REPLAY_MAX_EVENTS="3").start()
    try:
        first = await publish(jetstream, user_id, "first")
        for number in range(4):
            await publish(jetstream, user_id, str(number))
        await asyncio.sleep(0.2)

        stream = await open_stream(service, user_id, [("Last-Event-ID", str(first))])

        assert await stream.read_block() == STREAM_RESET
        await stream.close()
    finally:
        assert service.stop() == 0


async def test_id_older_than_window_resets(nats_url, jetstream, user_id):
    service = ServiceProcess(nats_url, SSE_REPLAY_WINDOW="500ms").start()
    try:
        first = await publish(jetstream, user_id, "first")
        await publish(jetstream, user_id, "second")
        await asyncio.sleep(1.0)

        stream = await open_stream(service, user_id, [("Last-Event-ID", str(first))])

        assert await stream.read_block() == STREAM_RESET
        await stream.close()
    finally:
        assert service.stop() == 0


async def test_reconnect_to_other_process(nats_url, jetstream, user_id):
    services = [ServiceProcess(nats_url).start() for _ in range(2)]
    try:
        stream = await open_stream(services[0], user_id)
        seen = await publish(jetstream, user_id, "seen")
        assert await stream.read_event() == event(seen, "seen")
        await stream.close()
        missed = await publish(jetstream, user_id, "missed")
        await asyncio.sleep(0.2)

        stream = await open_stream(services[1], user_id, [("Last-Event-ID", str(seen))])

        assert await stream.read_event() == event(missed, "missed")
        await stream.close()
    finally:
        for service in services:
            assert service.stop() == 0


async def test_no_gap_or_duplicate_at_seam(service, jetstream, user_id):
    stream = await open_stream(service, user_id)
    seen = await publish(jetstream, user_id, "0")
    assert await stream.read_event() == event(seen, "0")
    await stream.close()

    async def publish_many():
        return [await publish(jetstream, user_id, str(number)) for number in range(1, 201)]

    publishing = asyncio.create_task(publish_many())
    await asyncio.sleep(0.01)
    stream = await open_stream(service, user_id, [("Last-Event-ID", str(seen))])
    sequences = await publishing

    for number, sequence in enumerate(sequences, start=1):
        assert await stream.read_event() == event(sequence, str(number))
    with pytest.raises(asyncio.TimeoutError):
        await stream.read_event(timeout=0.5)
    await stream.close()


async def test_stream_ends_when_token_expires(service, user_id):
    # The token is rejected 5 s (the reva leeway) after its expiry.
    token = token_for(user_id, ttl_seconds=1)
    opened = time.monotonic()
    stream = await open_stream(service, user_id, token=token)

    assert await stream.read_block(timeout=10) == b"event: token-expired\ndata: \n\n"
    elapsed = time.monotonic() - opened
    assert await stream.read_to_end(timeout=2) == b""
    assert 4.5 < elapsed < 8

    again = await request(service.http_port, "/sse", [("x-access-token", token)])
    body = await again.read_to_end()
    assert again.status == 401
    assert json.loads(body)["code"] == "token_expired"
    await again.close()


async def test_reconnect_to_process_started_later(service, nats_url, jetstream, user_id):
    stream = await open_stream(service, user_id)
    seen = await publish(jetstream, user_id, "seen")
    assert await stream.read_event() == event(seen, "seen")
    await stream.close()
    missed = await publish(jetstream, user_id, "missed")

    # The new process has no history of these events; the stream has.
    later = ServiceProcess(nats_url).start()
    try:
        stream = await open_stream(later, user_id, [("Last-Event-ID", str(seen))])

        assert await stream.read_event() == event(missed, "missed")
        live = await publish(jetstream, user_id, "live")
        assert await stream.read_event() == event(live, "live")
        await stream.close()
    finally:
        assert later.stop() == 0
