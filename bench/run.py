"""
Run the SSE benchmark: start each server under test on 127.0.0.1 against a
nats-server of its own, run the scenarios, and write a Markdown table of
the medians over the repeats.

    python bench/run.py --streams 1000,5000 --repeat 3 --output bench-results.md
    python bench/run.py --soak --soak-minutes 10
    python bench/run.py --smoke

Every scenario also checks that each stream received each of its events
exactly once and in order. The table reports any that did not.
"""

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the repository importable, as ``python -m`` would.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import profile, scenarios, servers  # noqa: E402
from bench.report import markdown_report, soak_report, versions  # noqa: E402

# A whole set of scenarios against one server stops after this long, plus
# SET_TIMEOUT_PER_STREAM for each stream.
SET_TIMEOUT_SECONDS = 300
SET_TIMEOUT_PER_STREAM = 0.05


def set_timeout(streams):
    """Return the seconds that the set of scenarios with ``streams`` streams may take."""
    return SET_TIMEOUT_SECONDS + SET_TIMEOUT_PER_STREAM * streams


def raise_open_file_limit():
    """Raise this process's soft limit of open files to the hard limit; each stream is one socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Benchmark runsse against a raw-ASGI floor server on 127.0.0.1.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--servers", default="runsse,runsse-redis,floor,eventstream", help="comma-separated servers: " + ", ".join(servers.SERVERS))
    parser.add_argument("--streams", default="5000,10000", help="comma-separated numbers of streams")
    parser.add_argument("--repeat", type=int, default=3, help="runs of every scenario; the table shows medians")
    parser.add_argument("--rate", type=float, default=1000, help="per-user events per second in the latency scenarios")
    parser.add_argument("--duration", type=float, default=10, help="seconds of the latency scenarios")
    parser.add_argument("--burst", type=int, default=20000, help="per-user events published as fast as possible for the throughput scenario")
    parser.add_argument("--broadcasts", type=int, default=3, help="broadcasts in the broadcast scenario, one after another")
    parser.add_argument("--tabs", type=int, default=3, help="streams per user in the tabs scenario")
    parser.add_argument("--storm-clients", type=int, default=2, help="client processes that open the streams of the reconnect storm")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the events of one scenario")
    parser.add_argument("--soak", action="store_true", help="run the soak scenario instead of the standard ones")
    parser.add_argument("--soak-minutes", type=float, default=10, help="length of the soak in minutes")
    parser.add_argument("--soak-streams", type=int, default=2000, help="streams held open during the soak")
    parser.add_argument("--soak-rate", type=float, default=100, help="per-user events per second during the soak")
    parser.add_argument("--smoke", action="store_true", help="a few seconds on a few streams that checks delivery only")
    parser.add_argument("--gc-log", action="store_true", help="log the servers' slow garbage collections and report the longest")
    parser.add_argument("--gc-disable", action="store_true", help="turn the servers' cyclic garbage collector off, to measure what it costs")
    parser.add_argument("--profile", type=Path, help="record py-spy profiles of the burst and broadcast scenarios into this folder")
    parser.add_argument("--output", type=Path, help="write the Markdown report to this file as well as to stdout")
    parser.add_argument("--json", type=Path, help="write every measurement as JSON to this file")
    parser.add_argument(
        "--max-streams", default="",
        help="comma-separated SERVER=N: run SERVER only with at most N streams, such as eventstream=2000",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.servers.split(",") if name not in servers.SERVERS]
    if unknown:
        parser.error(f"unknown server {unknown[0]!r} in --servers; choose from {', '.join(servers.SERVERS)}")
    try:
        args.max_streams = parse_max_streams(args.max_streams)
    except ValueError as error:
        parser.error(f"invalid --max-streams {args.max_streams!r}: {error}")
    return args


def parse_max_streams(text):
    """Return ``{server: streams}`` from ``"name=N,name=N"``."""
    limits = {}
    for item in filter(None, text.split(",")):
        name, separator, value = item.partition("=")
        if not separator or name not in servers.SERVERS or not value.isdigit():
            raise ValueError(f"expected SERVER=N with SERVER one of {', '.join(servers.SERVERS)}, got {item!r}")
        limits[name] = int(value)
    return limits


async def run_standard(args, nats_url):
    """Return ``{streams: {server: [result of each repeat]}}``, alternating the servers within each repeat."""
    results = {}
    for repeat in range(args.repeat):
        for streams in [int(value) for value in args.streams.split(",")]:
            for name in args.servers.split(","):
                if streams > args.max_streams.get(name, streams):
                    continue
                server = servers.SERVERS[name](nats_url, gc_log=args.gc_log, gc_disable=args.gc_disable).start()
                print(f"repeat {repeat + 1}: {name} with {streams} streams", file=sys.stderr, flush=True)
                recorder = _recorder(args.profile, server, f"{name}-{streams}-{repeat + 1}")
                result = {}
                try:
                    await asyncio.wait_for(
                        scenarios.standard_set(
                            server, nats_url, streams,
                            rate=args.rate, duration=args.duration, burst=args.burst,
                            rounds=args.broadcasts, tabs=args.tabs, timeout=args.timeout,
                            storm_clients=args.storm_clients, profile=recorder, results=result,
                        ),
                        set_timeout(streams),
                    )
                except (asyncio.TimeoutError, OSError, RuntimeError) as error:
                    finished = ", ".join(result) or "none"
                    print(f"  stopped: {error!r}; finished scenarios: {finished}", file=sys.stderr, flush=True)
                    # The scenarios that finished still count; the report
                    # names the set as incomplete.
                    result["incomplete"] = f"stopped by {error!r} after {finished}"
                finally:
                    server.stop()
                if args.gc_log:
                    pauses = server.gc_pauses_ms()
                    result["gc"] = {"collections": len(pauses), "longest_ms": max(pauses, default=0), "total_ms": sum(pauses)}
                    print(f"  gc: {result['gc']}", file=sys.stderr, flush=True)
                results.setdefault(streams, {}).setdefault(name, []).append(result)
                _print_progress(result)
    return results


def _recorder(folder, server, prefix):
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return lambda scenario: profile.recording(server.pid, folder / f"{prefix}-{scenario}.txt")


def _print_progress(result):
    if "error" in result:
        return
    for name, value in result.items():
        if name == "gc" or not isinstance(value, dict):
            continue
        check = value.get("check")
        line = {key: round(item, 2) for key, item in value.items() if isinstance(item, float)}
        print(f"  {name}: {line}" + (f" [{check.summary()}]" if check else ""), file=sys.stderr, flush=True)


async def run_soak(args, nats_url):
    results = {}
    for name in args.servers.split(","):
        server = servers.SERVERS[name](nats_url).start()
        print(f"soak: {name} with {args.soak_streams} streams for {args.soak_minutes} min", file=sys.stderr, flush=True)
        try:
            results[name] = await scenarios.soak(
                server, nats_url, args.soak_streams, minutes=args.soak_minutes, rate=args.soak_rate
            )
        finally:
            server.stop()
        print(f"  {results[name]['check'].summary()}", file=sys.stderr, flush=True)
    return results


async def run_smoke(server_names=("runsse", "runsse-redis", "floor"), streams=12):
    """
    Run small versions of the scenarios against each server and return
    ``{server: {scenario: result}}``. It checks delivery, not speed: each
    result with a ``check`` has the ``StreamCheck`` of its scenario.
    """
    nats_server, nats_url = servers.start_nats()
    results = {}
    try:
        # The floor does not create the main-queue stream, so it must exist before any server starts.
        await scenarios.ensure_stream(nats_url)
        for name in server_names:
            server = servers.SERVERS[name](nats_url).start()
            try:
                results[name] = await scenarios.standard_set(
                    server, nats_url, streams, rate=100, duration=0.5, burst=300, rounds=2, tabs=3, timeout=15,
                    storm_clients=2, settle=0.2,
                )
            finally:
                server.stop()
    finally:
        nats_server.stop()
    return results


async def main_async(args):
    raise_open_file_limit()
    if args.smoke:
        results = await run_smoke(args.servers.split(","))
        failed = False
        for name, by_scenario in results.items():
            for scenario, value in by_scenario.items():
                if "check" in value:
                    print(f"{name} {scenario}: {value['check'].summary()}")
                    failed = failed or not value["check"].correct
            storm = by_scenario["storm"]
            print(f"{name} storm: {storm['opened']}/{storm['streams']} opened, failures {storm['failures']}")
        return 1 if failed else 0

    nats_server, nats_url = servers.start_nats()
    started = time.time()
    try:
        # The floor does not create the main-queue stream, so it must exist before any server starts.
        await scenarios.ensure_stream(nats_url)
        if args.soak:
            results = await run_soak(args, nats_url)
            report = soak_report(results, args)
        else:
            results = await run_standard(args, nats_url)
            report = markdown_report(results, args)
    finally:
        nats_server.stop()

    header = f"Run of {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} UTC, {time.time() - started:.0f} s; {versions()}\n\n"
    print(header + report)
    if args.output:
        args.output.write_text(header + report)
    if args.json:
        args.json.write_text(json.dumps(results, default=_jsonable, indent=1))
    return 0


def _jsonable(value):
    if hasattr(value, "__dataclass_fields__"):
        return {name: getattr(value, name) for name in value.__dataclass_fields__ if name != "latencies"}
    return repr(value)


def main(argv=None):
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
