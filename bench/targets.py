"""
The targets that runsse should meet, checked against the medians of a
benchmark run, and how its CPU cost grows with the streams and the tabs.

Both tables read the results after ``bench.report`` has added its derived
values (CPU time per delivery and per published event) to every repeat.
"""

from .client import median

# The targets are set for this many streams. A run without it is checked
# at its largest number of streams, which the table's heading then names.
TARGET_STREAMS = 10000

MEMORY_RATIO_LIMIT = 1.3
LATENCY_P99_LIMIT_MS = 50
BURST_DELIVERIES_LIMIT = 20000
BROADCAST_LIMIT_MS = 500
STORM_LIMIT_SECONDS = 3.0
REDIS_BROADCAST_LIMIT_MS = 1000
REDIS_DELIVERIES_LIMIT = 10000


def _good(results, streams, name):
    """Return the repeats of server ``name`` at ``streams`` streams that did not fail as a whole."""
    return [run for run in results.get(streams, {}).get(name, []) if "error" not in run]


def _median(runs, scenario, key):
    return median([run.get(scenario, {}).get(key) for run in runs])


def _format(value, digits, unit=""):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def _verdict(met):
    if met is None:
        return "n/a"
    return "met" if met else "missed"


def _ratio(after, before):
    return after / before if after is not None and before else None


def _smaller_count(counts, streams):
    """Return ``streams / 2`` if it ran, else the largest smaller number of streams that ran, or None."""
    if streams / 2 in counts:
        return streams // 2
    smaller = [count for count in counts if count < streams]
    return max(smaller) if smaller else None


def _server_names(results):
    names = []
    for by_server in results.values():
        names += [name for name in by_server if name not in names]
    return names


def linearity_table(results, args):
    """
    Return the ratios of server CPU time per published event and per
    delivery between consecutive numbers of streams, for per-user events
    at the fixed rate and for the burst. Also compare 1 tab with
    ``args.tabs`` tabs per user at the same number of streams.

    Costs grow linearly when doubling the streams or the tabs at most
    doubles the CPU time per published event. So the limit of the event
    ratio is the factor by which the streams or the tabs grew.
    """
    counts = sorted(results)
    lines = [
        "### Linearity: server CPU time per event (medians)",
        "",
        "| server | comparison | CPU per published event (µs) | ratio | CPU per delivery (µs) | ratio | limit of the event ratio | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in _server_names(results):
        # A server that ran only some numbers of streams (--max-streams)
        # is compared between those.
        ran = [streams for streams in counts if _good(results, streams, name)]
        for before, after in zip(ran, ran[1:]):
            for scenario, label in (("latency", f"per-user events at {args.rate:g}/s"), ("burst", "burst")):
                lines.append(_linearity_row(
                    name, f"{before} → {after} streams, {label}",
                    _good(results, before, name), scenario, _good(results, after, name), scenario, after / before,
                ))
        for streams in ran:
            runs = _good(results, streams, name)
            lines.append(_linearity_row(
                name, f"1 → {args.tabs} tabs per user at {streams} streams, {args.rate:g}/s",
                runs, "latency", runs, "tabs", args.tabs,
            ))
    return "\n".join(lines) + "\n"


def _linearity_row(name, comparison, runs_before, before, runs_after, after, factor):
    event_before, event_after = _median(runs_before, before, "cpu_us_per_event"), _median(runs_after, after, "cpu_us_per_event")
    delivery_before = _median(runs_before, before, "cpu_us_per_delivery")
    delivery_after = _median(runs_after, after, "cpu_us_per_delivery")
    event_ratio = _ratio(event_after, event_before)
    delivery_ratio = _ratio(delivery_after, delivery_before)
    met = None if event_ratio is None else event_ratio <= factor
    cells = [
        name, comparison,
        f"{_format(event_before, 0)} → {_format(event_after, 0)}", _format(event_ratio, 2, "x"),
        f"{_format(delivery_before, 0)} → {_format(delivery_after, 0)}", _format(delivery_ratio, 2, "x"),
        f"{factor:.2f}x", _verdict(met),
    ]
    return "| " + " | ".join(cells) + " |"


def targets_table(results, args):
    """Return one row per target with the measured median, the limit and whether the target was met."""
    counts = sorted(results)
    if not counts:
        return ""
    streams = TARGET_STREAMS if TARGET_STREAMS in counts else counts[-1]
    heading = f"### Targets at {streams} streams (medians of {args.repeat} runs)"
    if streams != TARGET_STREAMS:
        heading = f"### Targets, measured at {streams} streams (medians of {args.repeat} runs; the limits are set for {TARGET_STREAMS})"

    rows = [
        _memory_target(results, streams),
        _latency_target(results, streams, args),
        _minimum_target(
            "3", "per-user burst: deliveries/s", "runsse", _good(results, streams, "runsse"),
            "burst", "deliveries_per_second", BURST_DELIVERIES_LIMIT,
        ),
        _maximum_target(
            "4", "one broadcast: last stream has it after", "runsse", _good(results, streams, "runsse"),
            "broadcast", "last_stream_ms", BROADCAST_LIMIT_MS, " ms",
        ),
        _storm_target(results, streams),
        _maximum_target(
            "6", "redis layer, one broadcast: last stream has it after", "runsse-redis",
            _good(results, streams, "runsse-redis"), "broadcast", "last_stream_ms", REDIS_BROADCAST_LIMIT_MS, " ms",
        ),
        _minimum_target(
            "6", "redis layer, per-user burst: deliveries/s", "runsse-redis", _good(results, streams, "runsse-redis"),
            "burst", "deliveries_per_second", REDIS_DELIVERIES_LIMIT,
        ),
        _streams_linearity_target(results, streams, counts, args),
        _tabs_linearity_target(results, streams, args),
    ]
    lines = [
        heading,
        "",
        "| target | server | measured | limit | |",
        "|---|---|---|---|---|",
    ]
    for number, description, name, measured, limit, met in rows:
        lines.append(f"| {number}. {description} | {name} | {measured} | {limit} | {_verdict(met)} |")
    return "\n".join(lines) + "\n"


def _maximum_target(number, description, name, runs, scenario, key, limit, unit):
    value = _median(runs, scenario, key)
    met = None if value is None else value <= limit
    return number, description, name, _format(value, 0, unit), f"at most {limit:,}{unit}", met


def _minimum_target(number, description, name, runs, scenario, key, limit):
    value = _median(runs, scenario, key)
    met = None if value is None else value >= limit
    return number, description, name, _format(value, 0), f"at least {limit:,}", met


def _memory_target(results, streams):
    """Memory per stream of runsse over the floor's, paired repeat by repeat so that both ran at about the same time."""
    ratios = []
    for runsse_run, floor_run in zip(results.get(streams, {}).get("runsse", []), results.get(streams, {}).get("floor", [])):
        if "connect" not in runsse_run or "connect" not in floor_run:
            continue
        ratios.append(_ratio(runsse_run["connect"]["kib_per_stream"], floor_run["connect"]["kib_per_stream"]))
    value = median(ratios)
    met = None if value is None else value <= MEMORY_RATIO_LIMIT
    limit = f"at most {MEMORY_RATIO_LIMIT:.2f}x"
    return "1", "memory per stream, runsse / floor in the same repeat", "runsse", _format(value, 2, "x"), limit, met


def _latency_target(results, streams, args):
    runs = [run for run in _good(results, streams, "runsse") if "latency" in run]
    p99 = _median(runs, "latency", "p99_ms")
    checks = [run["latency"]["check"] for run in runs]
    lost = sum(check.missing for check in checks)
    correct = bool(checks) and all(check.correct and run["latency"]["complete"] for check, run in zip(checks, runs))
    met = None if p99 is None else p99 <= LATENCY_P99_LIMIT_MS and correct
    measured = "n/a" if p99 is None else f"{p99:,.1f} ms, {lost} lost"
    description = f"per-user events at {args.rate:g}/s: p99, and events lost over all repeats"
    return "2", description, "runsse", measured, f"at most {LATENCY_P99_LIMIT_MS} ms, none lost", met


def _storm_target(results, streams):
    runs = _good(results, streams, "runsse")
    seconds = _median(runs, "storm", "last_opened_s")
    failed = sum(run["storm"]["failed"] for run in runs if "storm" in run)
    met = None if seconds is None else seconds <= STORM_LIMIT_SECONDS and failed == 0
    measured = "n/a" if seconds is None else f"{seconds:.2f} s, {failed} failed"
    description = "reconnect storm: last stream opened after, and failed streams over all repeats"
    return "5", description, "runsse", measured, f"at most {STORM_LIMIT_SECONDS:g} s, none failed", met


def _streams_linearity_target(results, streams, counts, args):
    smaller = _smaller_count(counts, streams)
    description = f"CPU per published event at {args.rate:g}/s, half the streams → {streams} streams"
    if smaller is None:
        return "7", description, "runsse", "needs two numbers of streams", "n/a", None
    before = _median(_good(results, smaller, "runsse"), "latency", "cpu_us_per_event")
    after = _median(_good(results, streams, "runsse"), "latency", "cpu_us_per_event")
    ratio = _ratio(after, before)
    factor = streams / smaller
    met = None if ratio is None else ratio <= factor
    description = f"CPU per published event at {args.rate:g}/s, {smaller} → {streams} streams"
    return "7", description, "runsse", _format(ratio, 2, "x"), f"at most {factor:.2f}x", met


def _tabs_linearity_target(results, streams, args):
    runs = _good(results, streams, "runsse")
    ratio = _ratio(_median(runs, "tabs", "cpu_us_per_event"), _median(runs, "latency", "cpu_us_per_event"))
    met = None if ratio is None else ratio <= args.tabs
    description = f"CPU per published event at {args.rate:g}/s, 1 → {args.tabs} tabs per user"
    return "7", description, "runsse", _format(ratio, 2, "x"), f"at most {args.tabs:.2f}x", met
