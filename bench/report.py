"""
Markdown tables of benchmark results: medians over the repeats, with the
ratio of each server to the floor server and to django-eventstream when
a server named ``eventstream`` ran, then the linearity and targets tables
of ``bench.targets``.
"""

import platform
import subprocess
from importlib import metadata

from .client import median
from .servers import find_nats_server  # noqa: F401
from .targets import linearity_table, targets_table

# The servers that the other servers are compared with, by name. Each
# comparison appears only when that server ran.
BASELINES = ["floor", "eventstream"]

# (label, scenario, key, unit, digits): one row of the standard table.
ROWS = [
    ("connects/s while opening the streams", "connect", "connects_per_second", "", 0),
    ("RSS before the streams", "connect", "rss_idle_mib", "MiB", 1),
    ("RSS with the streams open", "connect", "rss_streams_mib", "MiB", 1),
    ("memory per stream", "connect", "kib_per_stream", "KiB", 1),
    ("per-user events at {rate:g}/s: p50", "latency", "p50_ms", "ms", 1),
    ("per-user events at {rate:g}/s: p99", "latency", "p99_ms", "ms", 1),
    ("server CPU at {rate:g}/s", "latency", "server_cpu_percent", "%", 0),
    ("server CPU per delivery at {rate:g}/s", "latency", "cpu_us_per_delivery", "µs", 0),
    ("max deliveries/s (burst of {burst} events)", "burst", "deliveries_per_second", "", 0),
    ("burst: p99 delivery latency", "burst", "p99_ms", "ms", 0),
    ("burst: server CPU", "burst", "server_cpu_percent", "% of a core", 0),
    ("burst: server CPU per delivery", "burst", "cpu_us_per_delivery", "µs", 0),
    ("burst: Redis CPU", "burst", "companion_cpu_percent", "% of a core", 0),
    ("burst: publisher rate", "burst", "publisher_rate", "events/s", 0),
    ("max deliveries/s (burst of broadcasts)", "fanout", "deliveries_per_second", "", 0),
    ("broadcast burst: server CPU", "fanout", "server_cpu_percent", "% of a core", 0),
    ("broadcast burst: server CPU per delivery", "fanout", "cpu_us_per_delivery", "µs", 1),
    ("broadcast burst: Redis CPU", "fanout", "companion_cpu_percent", "% of a core", 0),
    ("broadcast: last stream has it after", "broadcast", "last_stream_ms", "ms", 0),
    ("broadcast: p50 over the streams", "broadcast", "p50_ms", "ms", 0),
    ("{tabs} tabs per user at {rate:g}/s: p50", "tabs", "p50_ms", "ms", 1),
    ("{tabs} tabs per user at {rate:g}/s: p99", "tabs", "p99_ms", "ms", 1),
    ("{tabs} tabs per user at {rate:g}/s: server CPU", "tabs", "server_cpu_percent", "%", 0),
    ("{tabs} tabs per user at {rate:g}/s: server CPU per delivery", "tabs", "cpu_us_per_delivery", "µs", 0),
    ("{tabs} tabs per user at {rate:g}/s: server CPU per published event", "tabs", "cpu_us_per_event", "µs", 0),
    ("storm: last connect done after", "storm", "last_connected_s", "s", 2),
    ("storm: last stream has its first bytes after", "storm", "last_first_bytes_s", "s", 2),
    ("storm: last stream opened after", "storm", "last_opened_s", "s", 2),
    ("storm: p50 of stream opened", "storm", "p50_opened_s", "s", 2),
    ("storm: failed streams", "storm", "failed", "", 0),
    ("storm: server CPU", "storm", "server_cpu_percent", "% of a core", 0),
    ("storm: Redis CPU", "storm", "companion_cpu_percent", "% of a core", 0),
    ("storm: load client CPU, busiest of {storm_clients} processes", "storm", "client_cpu_percent_max", "% of a core", 0),
    ("load client CPU during the burst", "burst", "client_cpu_percent", "% of a core", 0),
    ("load client CPU during the broadcast burst", "fanout", "client_cpu_percent", "% of a core", 0),
    ("longest garbage collection (with --gc-log)", "gc", "longest_ms", "ms", 0),
    ("garbage collections over 10 ms or of generation 2 (with --gc-log)", "gc", "collections", "", 0),
]


def versions():
    """Return the versions of Python, the servers' packages and nats-server, as one line."""
    packages = ["daphne", "channels", "Twisted", "Django", "django-eventstream", "uvicorn", "uvloop", "httptools", "nats-py"]
    parts = [f"Python {platform.python_version()}"]
    for package in packages:
        try:
            parts.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package} not installed")
    nats_version = subprocess.run([find_nats_server(), "--version"], capture_output=True, text=True).stdout.strip()
    parts.append(nats_version)
    return ", ".join(parts)


def _derived(result):
    """
    Add the percentages and the CPU time per event that the tables show to
    one repeat's result. Percentages are of one core over the scenario's
    window from the first publish to the last receive.
    """
    for scenario in ("latency", "burst", "fanout", "tabs"):
        value = result.get(scenario)
        if not value or not value.get("seconds"):
            continue
        seconds = value["seconds"]
        value["client_cpu_percent"] = 100 * value["client_cpu_seconds"] / seconds
        value["server_cpu_percent"] = 100 * value["server_cpu_seconds"] / seconds
        if value.get("companion_cpu_seconds") is not None:
            value["companion_cpu_percent"] = 100 * value["companion_cpu_seconds"] / seconds
        # The server's CPU time over the whole scenario, idle moments
        # included, per delivery and per published event, in microseconds.
        if value.get("deliveries"):
            value["cpu_us_per_delivery"] = 1e6 * value["server_cpu_seconds"] / value["deliveries"]
        if value["published"].get("published"):
            value["cpu_us_per_event"] = 1e6 * value["server_cpu_seconds"] / value["published"]["published"]
    if "burst" in result:
        result["burst"]["publisher_rate"] = result["burst"]["published"]["rate"]


def _format(value, digits):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _correctness(runs):
    problems = []
    for run in runs:
        if "error" in run:
            problems.append(run["error"])
            continue
        if "incomplete" in run:
            problems.append(run["incomplete"])
        for scenario, value in run.items():
            check = value.get("check") if isinstance(value, dict) else None
            if check is not None and not check.correct:
                problems.append(f"{scenario}: {check.summary()}")
    return "all delivered once, in order" if not problems else "; ".join(problems)


def _comparisons(names):
    """Return the ``(server, baseline)`` pairs whose ratio the table shows, for the servers that ran."""
    pairs = []
    for baseline in BASELINES:
        if baseline not in names:
            continue
        pairs += [(name, baseline) for name in names if name not in BASELINES]
    return pairs


def _storm_failures(runs):
    """Return the reasons of the storm's failed streams over all repeats, most frequent first, as text."""
    counts = {}
    for run in runs:
        for reason, count in run.get("storm", {}).get("failures", {}).items():
            counts[reason] = counts.get(reason, 0) + count
    return ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items(), key=lambda item: -item[1]))


def markdown_report(results, args):
    """
    Return one table per number of streams from ``results``, which maps
    streams to ``{server: [repeats]}``, then the linearity and targets tables.
    """
    sections = []
    for streams, by_server in results.items():
        names = list(by_server)
        good = {name: [run for run in runs if "error" not in run] for name, runs in by_server.items()}
        for runs in good.values():
            for run in runs:
                _derived(run)

        comparisons = _comparisons(names)
        header = ["scenario", *names] + [f"{name} / {baseline}" for name, baseline in comparisons]
        lines = [
            f"### {streams} streams (medians of {args.repeat} runs)",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for label, scenario, key, unit, digits in ROWS:
            label = label.format(rate=args.rate, burst=args.burst, tabs=args.tabs, storm_clients=args.storm_clients)
            medians = {name: median([run.get(scenario, {}).get(key) for run in good[name]]) for name in names}
            if all(value is None for value in medians.values()):
                continue
            cells = [f"{label}" + (f" ({unit})" if unit else "")]
            cells += [_format(medians[name], digits) for name in names]
            for name, baseline in comparisons:
                base = medians[baseline]
                ratio = medians[name] / base if medians[name] is not None and base else None
                cells.append("n/a" if ratio is None else f"{ratio:.2f}x")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for name in names:
            lines.append(f"- {name}: {_correctness(by_server[name])}")
            failures = _storm_failures(good[name])
            if failures:
                lines.append(f"- {name}: failed storm streams by reason: {failures}")
        sections.append("\n".join(lines) + "\n")
    sections.append(linearity_table(results, args))
    sections.append(targets_table(results, args))
    return "\n".join(sections)


def soak_report(results, args):
    """Return the soak results: RSS over time, growth after warm-up, lost events and latency."""
    lines = [
        f"### Soak: {args.soak_streams} streams, {args.soak_minutes:g} min, "
        f"{args.soak_rate:g} per-user events/s and a broadcast every 10 s",
        "",
        "| server | RSS after warm-up (MiB) | RSS at the end (MiB) | growth (MiB) | delivered | lost | duplicated "
        "| out of order | per-user p50 / p99 (ms) | broadcast p50 / p99 (ms) | load client CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        check = result["check"]
        client_cpu = 100 * result["client_cpu_seconds"] / result["seconds"]
        lines.append(
            f"| {name} | {_format(result['rss_after_warmup_mib'], 1)} | {_format(result['rss_end_mib'], 1)} "
            f"| {_format(result['growth_after_warmup_mib'], 1)} | {check.delivered:,}/{check.expected:,} "
            f"| {check.missing} | {check.duplicates} | {check.out_of_order} "
            f"| {_format(result['p50_ms'], 1)} / {_format(result['p99_ms'], 1)} "
            f"| {_format(result['broadcast_p50_ms'], 0)} / {_format(result['broadcast_p99_ms'], 0)} | {client_cpu:.0f}% of a core |"
        )
    lines.append("")
    for name, result in results.items():
        samples = ", ".join(f"{at:.0f}s {rss:.1f}" for at, rss in result["samples"])
        lines.append(f"- {name} RSS samples (s MiB): {samples}")
    return "\n".join(lines) + "\n"
