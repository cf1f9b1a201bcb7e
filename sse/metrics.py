"""
Prometheus metrics of the service, all declared here.

Labels take values from small closed sets; a user id is never a label.
"""

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS_ACTIVE = Gauge(
    "sse_connections_active",
    "Event streams open right now.",
)
CONNECTIONS_TOTAL = Counter(
    "sse_connections_total",
    "Event streams opened since the process started.",
)
EVENTS_RECEIVED = Counter(
    "sse_events_received_total",
    "NATS messages taken from the event stream, by what became of them.",
    ["result"],
)
EVENTS_SENT = Counter(
    "sse_events_sent_total",
    "Events written to client streams, counted once per stream.",
)
EVENTS_DROPPED = Counter(
    "sse_events_dropped_total",
    "Events not written to a client stream, by reason.",
    ["reason"],
)

DELIVERY_LATENCY = Histogram(
    "sse_delivery_latency_seconds",
    "Time from the event's envelope timestamp to its write to a client stream.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
NATS_CONNECTED = Gauge(
    "sse_nats_connected",
    "1 while the bridge is connected to NATS and its consumer is bound, else 0.",
)
REGISTRY_REGISTERED = Gauge(
    "sse_registry_registered",
    "1 while the last write of this process's service registry entry succeeded, else 0.",
)

# Every label value is created up front so that its series exists, at zero,
# from the start. A rate() over a series that appears late misses its first
# step.
for _result in ("delivered", "ignored", "malformed", "too_large"):
    EVENTS_RECEIVED.labels(result=_result)
for _reason in ("slow_client", "too_large", "duplicate"):
    EVENTS_DROPPED.labels(reason=_reason)
