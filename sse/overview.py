"""
The content of the "SSE settings" admin page: every setting with its value
and source, and the live counts of this process.

A secret setting is reported as ``SECRET_MASK`` when it is set and as an
empty string when it is not, so its value never reaches a template.
"""

from dataclasses import dataclass

from . import metrics
from .conf import SSE_FIELDS
from .parsing import Address, parse_duration, redact_url
from .status import status

SECRET_MASK = "********"


@dataclass(frozen=True)
class SettingRow:
    """One setting as the admin page shows it, every value as display text."""

    name: str
    value: str
    source: str
    default: str
    variables: tuple
    description: str
    secret: bool


@dataclass(frozen=True)
class LiveCounts:
    """Streams, users and NATS state of this process, and its event counters since start."""

    streams: int
    users: int
    nats_state: str
    events_received: dict
    events_sent: int
    events_dropped: dict


def setting_rows(config):
    """
    Return a ``SettingRow`` for every field of ``SSE_FIELDS``.

    ``config`` is the resolved ``SSEConfig``, or ``None`` when the
    configuration is invalid, which leaves value and source empty.
    """
    rows = []
    for name, config_field in SSE_FIELDS.items():
        metadata = config_field.metadata
        if config is None:
            value = source = ""
        else:
            value = format_value(config_field, getattr(config, name))
            source = config.sources.get(name, "default")

        rows.append(
            SettingRow(
                name=name.upper(),
                value=value,
                source=source,
                default=metadata["default"],
                # The variable that wins comes first.
                variables=tuple(reversed(metadata["env"])),
                description=metadata["description"],
                secret=metadata["secret"],
            )
        )
    return rows


def format_value(config_field, value):
    """Return ``value`` as text in the format of the field's environment variable, masking secrets."""
    if config_field.metadata["secret"]:
        return SECRET_MASK if value else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    # Address is a tuple too, but its str() is the host:port text.
    if isinstance(value, tuple) and not isinstance(value, Address):
        return redact_url(",".join(value))
    if config_field.metadata["parse"] is parse_duration:
        return format_duration(value)
    return redact_url(str(value))


def format_duration(seconds):
    """Return ``seconds`` as a Go duration in seconds, such as ``30s`` or ``0.25s``."""
    # Fixed-point notation, because Go does not parse an exponent such as 2e-06s.
    text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    return f"{text}s"


def live_counts():
    """Return the current ``LiveCounts`` of this process."""
    # Under runsse this runs in a worker thread while the event loop changes
    # the status. Each status property is a single len() or sum() over a
    # dict of ints, which CPython runs without releasing the GIL.
    return LiveCounts(
        streams=status.streams,
        users=status.users,
        nats_state=status.nats_state,
        events_received=counter_totals(metrics.EVENTS_RECEIVED),
        events_sent=sum(counter_totals(metrics.DELIVERIES).values()),
        events_dropped=counter_totals(metrics.EVENTS_DROPPED),
    )


def counter_totals(counter):
    """
    Return the current values of a Prometheus ``Counter``, keyed by the
    value of its one label, or by ``""`` when it has no labels.
    """
    totals = {}
    for family in counter.collect():
        for sample in family.samples:
            # Each counter also exports a _created sample with its start time.
            if sample.name == f"{family.name}_total":
                key = ",".join(sample.labels.values())
                totals[key] = int(sample.value)
    return totals
