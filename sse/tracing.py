"""
OpenTelemetry tracing of streams and deliveries.

Spans:

* ``GET <path>`` (server): one per stream request, from the request to
  the end of the stream.
* ``main-queue process`` (consumer): one per delivered SendSSE event, from
  its arrival to its hand-over to the channel layer, linked to the
  ``traceparent`` that reva puts in the event metadata.
* ``sse send`` (internal): a child of the consumer span for each stream
  the event is written to, ending at the write to the socket.

Both ``jaeger`` (the oCIS default) and ``otlp`` export OTLP over HTTP,
which Jaeger has accepted since 1.35: ``SSE_TRACING_COLLECTOR`` is the
full URL, such as ``http://jaeger:4318/v1/traces``, and
``SSE_TRACING_ENDPOINT`` (``host:port``) stands for
``http://host:port/v1/traces``. The collector wins when both are set.
"""

import collections
import logging
import threading
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

logger = logging.getLogger(__name__)

_propagator = TraceContextTextMapPropagator()

# True once a provider is installed; while False, the hot paths create no
# spans at all, not even no-op ones. The provider is the app's own rather
# than OpenTelemetry's global one, so that a Django project that embeds the
# app keeps control of its global provider.
enabled = False
recorder = None
_provider = None


def exporter_url(config):
    """Return the OTLP/HTTP URL that spans are sent to."""
    if config.tracing_collector:
        return config.tracing_collector
    return f"http://{config.tracing_endpoint}/v1/traces"


def setup_tracing(config, exporter=None):
    """
    Install a tracer provider when tracing or the span page is on.

    ``exporter`` replaces the OTLP exporter, for tests. Returns the
    provider, or ``None`` when neither is configured.
    """
    global enabled, recorder, _provider

    if not (config.tracing_enabled or config.debug_zpages or exporter is not None):
        return None

    provider = TracerProvider(resource=Resource.create({"service.name": "sse"}))
    if exporter is None and config.tracing_enabled:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=exporter_url(config))
        logger.info("Exporting traces to %s", exporter_url(config))
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if config.debug_zpages:
        recorder = SpanRecorder()
        provider.add_span_processor(recorder)

    _provider = provider
    enabled = True
    return provider


def shutdown_tracing():
    """Flush and remove the provider that ``setup_tracing`` installed."""
    global enabled, recorder, _provider

    if _provider is not None:
        _provider.shutdown()
    enabled = False
    recorder = None
    _provider = None


def tracer():
    return _provider.get_tracer("sse")


def start_delivery_span(event):
    """Start the consumer span of ``event``, linked to the trace that published it."""
    links = []
    if event.traceparent:
        context = _propagator.extract({"traceparent": event.traceparent})
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            links.append(Link(parent))
    return tracer().start_span(
        "main-queue process",
        kind=SpanKind.CONSUMER,
        links=links,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": "main-queue",
            "messaging.message.id": event.event_id,
            "sse.event_type": event.type,
            "sse.recipients": len(event.user_ids),
        },
    )


def traceparent_of(span):
    """Return the W3C ``traceparent`` of ``span``, to carry it through the channel layer."""
    carrier = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def start_send_span(traceparent):
    """Start the span of one write, as a child of the delivery span ``traceparent``."""
    context = _propagator.extract({"traceparent": traceparent})
    return tracer().start_span("sse send", context=context)


def start_stream_span(scope):
    """Start the server span of a stream request."""
    return tracer().start_span(
        f"{scope['method']} {scope['path']}",
        kind=SpanKind.SERVER,
        attributes={"http.request.method": scope["method"], "url.path": scope["path"]},
    )


class SpanRecorder(SpanProcessor):
    """Keep in-flight spans and the most recent ended ones in memory for ``/debug/tracez``."""

    def __init__(self, recent=200):
        self._lock = threading.Lock()
        self._in_flight = {}
        self._recent = collections.deque(maxlen=recent)

    def on_start(self, span, parent_context=None):
        with self._lock:
            self._in_flight[span.context.span_id] = span

    def on_end(self, span):
        with self._lock:
            self._in_flight.pop(span.context.span_id, None)
            self._recent.append(span)

    def snapshot(self):
        """Return ``(in_flight, recent)`` as lists of dicts, newest first."""
        now = time.time_ns()
        with self._lock:
            in_flight = [_describe(span, now) for span in self._in_flight.values()]
            recent = [_describe(span, now) for span in reversed(self._recent)]
        return in_flight, recent

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


def _describe(span, now):
    end = span.end_time or now
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "start": span.start_time,
        "duration_ms": round((end - span.start_time) / 1e6, 3),
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "links": [format(link.context.trace_id, "032x") for link in span.links],
    }
