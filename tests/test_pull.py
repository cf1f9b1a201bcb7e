"""
PullConsumer against a real JetStream server: order over many batches,
empty batches when the requests expire, and errors for a lost consumer.
"""

import uuid

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from sse.pull import PullConsumer, PullError


@pytest.fixture
async def stream(nats_url):
    """A stream of its own, with its subject, and a connection to publish into it."""
    connection = await nats.connect(nats_url)
    name = f"pull-{uuid.uuid4().hex[:12]}"
    js = connection.jetstream()
    await js.add_stream(name=name, subjects=[name])
    yield connection, js, name
    await js.delete_stream(name)
    await connection.close()


async def add_consumer(js, name, max_ack_pending=1000):
    consumer = f"c-{uuid.uuid4().hex[:8]}"
    await js.add_consumer(
        name,
        ConsumerConfig(
            name=consumer,
            durable_name=consumer,
            ack_policy=AckPolicy.ALL,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=max_ack_pending,
        ),
    )
    return consumer


async def test_messages_arrive_in_order_over_many_batches(stream):
    connection, js, name = stream
    for number in range(1000):
        await connection.publish(name, b"%d" % number)
    await connection.flush()
    consumer = await add_consumer(js, name)

    pull = PullConsumer(connection, name, consumer, batch=64, expires=1.0)
    await pull.start()
    received = []
    batches = 0
    while len(received) < 1000:
        batch = await pull.next_batch(2.0)
        assert 0 < len(batch) <= 64
        received.extend(batch)
        batches += 1
        await batch[-1].ack()
    await pull.stop()

    assert [message.data for message in received] == [b"%d" % number for number in range(1000)]
    assert [message.metadata.sequence.stream for message in received] == list(range(1, 1001))
    assert batches >= 1000 // 64


async def test_expired_requests_give_empty_batches_then_new_messages(stream):
    connection, js, name = stream
    consumer = await add_consumer(js, name)
    pull = PullConsumer(connection, name, consumer, batch=16, expires=0.3)
    await pull.start()

    assert await pull.next_batch(1.0) == []
    # The request expired on the server, which sent a status message.
    assert pull.requested == 0
    assert pull.answered_at > 0

    await connection.publish(name, b"late")
    batch = await pull.next_batch(2.0)
    assert [message.data for message in batch] == [b"late"]
    await pull.stop()


async def test_deleted_consumer_raises(stream):
    connection, js, name = stream
    consumer = await add_consumer(js, name)
    pull = PullConsumer(connection, name, consumer, batch=16, expires=5.0)
    await pull.start()
    assert await pull.next_batch(0.2) == []

    await js.delete_consumer(name, consumer)
    with pytest.raises(PullError, match="409 Consumer Deleted"):
        await pull.next_batch(2.0)
    await pull.stop()


async def test_missing_consumer_raises(stream):
    connection, js, name = stream
    pull = PullConsumer(connection, name, "nobody", batch=16, expires=1.0)
    await pull.start()
    with pytest.raises(PullError, match="no JetStream consumer responds"):
        await pull.next_batch(2.0)
    await pull.stop()
