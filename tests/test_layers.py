import asyncio

import pytest
from channels.exceptions import ChannelFull

from sse.layers import OVERFLOW, InMemoryChannelLayer


async def test_group_send_reaches_every_member():
    layer = InMemoryChannelLayer()
    first, second = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", first)
    await layer.group_add("g", second)

    await layer.group_send("g", {"type": "sse.event", "frame": b"x"})

    assert await layer.receive(first) == {"type": "sse.event", "frame": b"x"}
    assert await layer.receive(second) == {"type": "sse.event", "frame": b"x"}


async def test_group_discard_stops_delivery_and_forgets_group():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("g", channel)

    await layer.group_discard("g", channel)
    await layer.group_send("g", {"type": "sse.event"})

    assert layer.groups == {}
    assert layer.channels == {}


async def test_cancelled_receive_forgets_channel():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "a"})
    await layer.receive(channel)
    receiver = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0)

    receiver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await receiver

    assert channel not in layer.channels


async def test_cancelled_receiver_spares_other_receiver():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    first = asyncio.create_task(layer.receive(channel))
    second = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0)

    first.cancel()
    await asyncio.sleep(0)
    await layer.send(channel, {"type": "a"})

    assert await asyncio.wait_for(second, 1) == {"type": "a"}
    assert first.cancelled()


async def test_idle_channel_holds_no_queue():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "a"})
    await layer.send(channel, {"type": "b"})

    assert len(layer.channels[channel]) == 2
    assert await layer.receive(channel) == {"type": "a"}
    assert await layer.receive(channel) == {"type": "b"}
    assert layer.channels[channel].messages is None


async def test_sweep_skips_empty_channels():
    layer = InMemoryChannelLayer(expiry=0.01, sweep_interval=0.0)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "a"})
    await layer.receive(channel)

    await layer.send(await layer.new_channel(), {"type": "b"})

    assert channel in layer.channels
    assert channel not in layer._filled


async def test_send_to_full_channel_raises():
    layer = InMemoryChannelLayer(capacity=2)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "a"})
    await layer.send(channel, {"type": "b"})

    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "c"})


async def test_group_send_overflow_replaces_queue():
    layer = InMemoryChannelLayer(capacity=3)
    slow, fast = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", slow)
    await layer.group_add("g", fast)

    for number in range(3):
        await layer.group_send("g", {"type": "sse.event", "number": number})
        assert (await layer.receive(fast))["number"] == number
    await layer.group_send("g", {"type": "sse.event", "number": 3})

    assert await layer.receive(slow) == {"type": OVERFLOW, "dropped": 4}
    assert (await layer.receive(fast))["number"] == 3


async def test_overflow_counts_accumulate():
    layer = InMemoryChannelLayer(capacity=2)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)

    for number in range(6):
        await layer.group_send("g", {"type": "sse.event", "number": number})

    # Events 0 and 1 fill the queue, so event 2 turns all three into a
    # marker (3 dropped). Event 3 queues behind it, and event 4 folds the
    # marker, event 3 and itself into a new marker (5 dropped).
    assert await layer.receive(channel) == {"type": OVERFLOW, "dropped": 5}
    assert (await layer.receive(channel))["number"] == 5


async def test_waiting_receiver_gets_group_message():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    receiver = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0)

    await layer.group_send("g", {"type": "sse.event"})

    assert await asyncio.wait_for(receiver, 1) == {"type": "sse.event"}


async def test_sweep_removes_expired_channel_from_groups():
    layer = InMemoryChannelLayer(expiry=0.01, sweep_interval=0.0)
    dead, alive = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", dead)
    await layer.group_add("g", alive)
    await layer.group_send("g", {"type": "sse.event"})
    await layer.receive(alive)

    await asyncio.sleep(0.02)
    await layer.group_send("other", {"type": "sse.event"})

    assert dead not in layer.channels
    assert list(layer.groups["g"]) == [alive]


async def test_membership_does_not_expire_with_time():
    layer = InMemoryChannelLayer(expiry=0.01, sweep_interval=0.0)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)

    await asyncio.sleep(0.02)
    await layer.group_send("g", {"type": "sse.event"})

    assert await layer.receive(channel) == {"type": "sse.event"}


async def test_group_send_copies_message_once():
    layer = InMemoryChannelLayer()
    first, second = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", first)
    await layer.group_add("g", second)
    original = {"type": "sse.event", "payload": {"nested": 1}}

    await layer.group_send("g", original)
    original["payload"]["nested"] = 2

    received = [await layer.receive(first), await layer.receive(second)]
    assert received[0]["payload"] == {"nested": 1}
    assert received[0] is received[1]

