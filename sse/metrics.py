"""
Prometheus metrics of the service, all declared here.

Labels take values from small closed sets; a user id is never a label.
"""

from bisect import bisect_left

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

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
EVENTS_DROPPED = Counter(
    "sse_events_dropped_total",
    "Events not written to a client stream, by reason.",
    ["reason"],
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Deliveries:
    """
    The events written to client streams and their delivery latency, as
    the counter ``sse_events_sent_total`` and the histogram
    ``sse_delivery_latency_seconds``.

    A broadcast makes one write per stream, so these are updated far more
    often than any other metric. prometheus_client takes a lock for every
    update, and its histogram walks the buckets. Here an update is a few
    additions on plain numbers, and the metrics are built when scraped.
    Updates must come from the event loop's thread.
    """

    def __init__(self, buckets=LATENCY_BUCKETS):
        self.bounds = buckets
        self.sent = 0
        self.latency_counts = [0] * (len(buckets) + 1)
        self.latency_sum = 0.0

    def inc(self, amount=1):
        """Count ``amount`` events written."""
        self.sent += amount

    def observe(self, seconds):
        """Record the delivery latency of one event."""
        self.latency_counts[bisect_left(self.bounds, seconds)] += 1
        self.latency_sum += seconds

    def collect(self):
        sent = CounterMetricFamily("sse_events_sent", "Events written to client streams, counted once per stream.")
        sent.add_metric([], self.sent)
        yield sent

        latency = HistogramMetricFamily(
            "sse_delivery_latency_seconds",
            "Time from the event's envelope timestamp to its write to a client stream.",
        )
        buckets = []
        total = 0
        for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), self.latency_counts):
            total += count
            buckets.append((bound, total))
        latency.add_metric([], buckets, sum_value=self.latency_sum)
        yield latency


DELIVERIES = Deliveries()
REGISTRY.register(DELIVERIES)
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
