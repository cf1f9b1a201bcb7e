"""
Tracing of a delivery through a bridge running in this process against the
real NATS server, with spans collected by an in-memory exporter.
"""

import asyncio
import json

import nats
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from sse import tracing
from sse.bridge import Bridge
from sse.conf import load_config
from sse.groups import user_group
from sse.layers import InMemoryChannelLayer
from sse.wire import encode_envelope

TRACE_ID = "7d2f9a41c0b8e35f6a1d4c7e9b2f0a83"
TRACEPARENT = f"00-{TRACE_ID}-3e9c1b7d5a2f4e60-01"


async def test_delivery_spans_link_publisher_trace(nats_url, jetstream):
    exporter = InMemorySpanExporter()
    tracing.setup_tracing(load_config(environ={"SSE_EVENTS_ENDPOINT": nats_url}), exporter=exporter)
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add(user_group("traced-user"), channel)
    bridge = Bridge(load_config(environ={"SSE_EVENTS_ENDPOINT": nats_url}), channel_layer=layer)
    task = asyncio.create_task(bridge.run())
    try:
        for _ in range(100):
            if bridge.ready:
                break
            await asyncio.sleep(0.05)
        envelope = json.loads(encode_envelope(["traced-user"], "traced", "payload"))
        envelope["Metadata"]["traceparent"] = TRACEPARENT
        await jetstream.publish("main-queue", json.dumps(envelope).encode())

        message = await asyncio.wait_for(layer.receive(channel), 5)
        tracing.start_send_span(message["trace"]).end()
    finally:
        await bridge.stop()
        task.cancel()
        tracing.shutdown_tracing()

    spans = {span.name: span for span in exporter.get_finished_spans()}
    process, send = spans["main-queue process"], spans["sse send"]
    assert process.kind == SpanKind.CONSUMER
    assert [format(link.context.trace_id, "032x") for link in process.links] == [TRACE_ID]
    assert process.attributes["sse.event_type"] == "traced"
    assert process.attributes["messaging.destination.name"] == "main-queue"
    assert send.parent.span_id == process.context.span_id
    assert send.context.trace_id == process.context.trace_id
    assert message["trace"].startswith(f"00-{process.context.trace_id:032x}-{process.context.span_id:016x}-")


def test_tracing_off_creates_no_spans():
    assert tracing.enabled is False
    assert tracing.setup_tracing(load_config(environ={})) is None
    assert tracing.enabled is False
