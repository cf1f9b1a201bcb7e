"""
The load client of the reconnect storm: a few processes that together
open N streams at the same moment, each process its share all at once.

``StormClients`` in the runner starts the processes. Each one runs
``python -m bench.storm``, mints its tokens and builds its requests, and
prints ``ready``. Then it reads one command a line on stdin and prints one
JSON line on stdout for each:

- ``go START``: at ``time.time() == START``, open every stream at once
  and wait until each has opened or failed, or the timeout passed.
- ``check BROADCASTS TIMEOUT LINGER``: wait until every opened stream has
  ``BROADCASTS`` broadcasts and compare what arrived with that.
- ``close``: close the streams and exit.
"""

import argparse
import asyncio
import errno
import json
import math
import resource
import sys
import time
from pathlib import Path

from sse.tokens import mint_reva_token

from .client import EVENT_FORMATS, PLAIN, LoadClient, StreamCheck, StreamError, StreamProtocol
from .servers import JWT_SECRET
from .workload import user_ids

ROOT = Path(__file__).resolve().parent.parent
USER_PREFIX = "s"
# JSON lines with a time for every stream exceed asyncio's default 64 KiB
# limit of one line.
LINE_LIMIT = 64 * 2**20
CHECK_FIELDS = ("expected", "delivered", "missing", "duplicates", "out_of_order", "unexpected", "closed_streams")


class StormProtocol(StreamProtocol):
    """A stream that also stores when it connected, got its first bytes and opened, and why it failed."""

    def __init__(self, client, request):
        super().__init__(client, request)
        self.connected_at = None
        self.first_bytes_at = None
        self.opened_at = None
        self.status = None
        self.lost_error = None

    def connection_made(self, transport):
        self.connected_at = time.time()
        super().connection_made(transport)

    def connection_lost(self, exc):
        self.lost_error = exc
        super().connection_lost(exc)

    def data_received(self, data):
        received = time.time()
        if self.first_bytes_at is None:
            self.first_bytes_at = received
        if self.status is None and not self.head_done:
            # Until the head is parsed, self.raw contains every byte so far.
            start = bytes(self.raw) + data
            line_end = start.find(b"\r\n")
            if line_end >= 0:
                parts = start[:line_end].split(b" ")
                self.status = parts[1].decode("latin-1") if len(parts) > 1 else "invalid"
        super().data_received(data)
        if self.opened_at is None and self.opened.done() and not self.opened.cancelled() and self.opened.exception() is None:
            self.opened_at = received


def connect_failure(error):
    """Return the reason that ``create_connection`` failed with ``error``, in a few words."""
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionResetError):
        return "reset"
    if isinstance(error, TimeoutError):
        return "connect timed out"
    if error.errno == errno.EADDRNOTAVAIL:
        return "no free local port"
    if error.errno == errno.EMFILE:
        return "too many open files in the client"
    return f"{type(error).__name__} errno {error.errno}"


def stream_failure(protocol):
    """Return why a connected stream ended before its first comment."""
    if protocol.status is not None and protocol.status != "200":
        return f"status {protocol.status}"
    if isinstance(protocol.lost_error, ConnectionResetError):
        return "reset"
    if protocol.first_bytes_at is None:
        return "closed without response"
    return "closed before the stream opened"


def pending_failure(protocol, timeout):
    """Return why a stream that was still opening at the deadline had not opened."""
    if protocol is None or protocol.connected_at is None:
        return f"not connected within {timeout:g} s"
    if protocol.first_bytes_at is None:
        return f"no response within {timeout:g} s"
    return f"not opened within {timeout:g} s"


class StormWorker:
    """One process's share of the storm: ``count`` streams of users ``first`` to ``first + count - 1``."""

    def __init__(self, port, first, count, timeout, host="127.0.0.1", event_format=PLAIN):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.client = LoadClient(port, host, event_format=event_format)
        # Tokens and requests are built before the storm, so that the
        # storm itself costs the client only the connects and the reads.
        self.users = user_ids(first + count, USER_PREFIX)[first:]
        self.requests = [
            self.client._request(mint_reva_token(user_id, JWT_SECRET, ttl_seconds=24 * 3600)) for user_id in self.users
        ]
        self.protocols = [None] * count

    async def open_one(self, index):
        """Open stream ``index`` and return None once it has opened, or the reason it failed."""
        loop = asyncio.get_running_loop()
        protocol = self.protocols[index] = StormProtocol(self.client, self.requests[index])
        try:
            await loop.create_connection(lambda: protocol, self.host, self.port)
        except OSError as error:
            return connect_failure(error)
        try:
            await protocol.opened
        except StreamError:
            return stream_failure(protocol)
        return None

    async def storm(self, start_at):
        """Open every stream at ``start_at`` (``time.time()``) and return the outcome as a dict."""
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu = time.process_time()
        tasks = [asyncio.create_task(self.open_one(index)) for index in range(len(self.requests))]
        done, pending = await asyncio.wait(tasks, timeout=max(0.0, start_at + self.timeout - time.time()))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        settled = time.time()
        cpu = time.process_time() - cpu

        failures = {}
        opened = []
        for index, task in enumerate(tasks):
            if task in pending:
                reason = pending_failure(self.protocols[index], self.timeout)
            else:
                reason = task.result()
            if reason is None:
                opened.append((self.users[index], self.protocols[index]))
            else:
                failures[reason] = failures.get(reason, 0) + 1
                protocol = self.protocols[index]
                if protocol is not None and protocol.transport is not None:
                    protocol.transport.close()

        self.client.streams = opened
        self.client.reset()
        return {
            "streams": len(tasks),
            "opened": len(opened),
            "failures": failures,
            "connected_s": [round(protocol.connected_at - start_at, 4) for _, protocol in opened],
            "first_bytes_s": [round(protocol.first_bytes_at - start_at, 4) for _, protocol in opened],
            "opened_s": [round(protocol.opened_at - start_at, 4) for _, protocol in opened],
            "cpu_seconds": cpu,
            "seconds": settled - start_at,
        }

    async def check(self, broadcasts, timeout, linger):
        """Wait for ``broadcasts`` broadcasts on every opened stream and return the ``StreamCheck`` fields."""
        await self.client.wait_for(broadcasts * len(self.client.streams), timeout)
        await asyncio.sleep(linger)
        check = self.client.check({}, broadcasts=broadcasts)
        fields = {name: getattr(check, name) for name in CHECK_FIELDS}
        fields["first_published"] = check.first_published
        fields["last_received"] = check.last_received
        return fields

    def close(self):
        self.client.close()
        for protocol in self.protocols:
            if protocol is not None and protocol.transport is not None:
                protocol.transport.close()


async def serve_commands(worker):
    """Run the commands that arrive on stdin, printing one JSON line for each, until ``close`` or EOF."""
    print("ready", flush=True)
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        words = line.split()
        if not words or words[0] == "close":
            worker.close()
            return
        if words[0] == "go":
            output = await worker.storm(float(words[1]))
        elif words[0] == "check":
            output = await worker.check(int(words[1]), float(words[2]), float(words[3]))
        else:
            raise ValueError(f"unknown command {line.strip()!r}; expected go, check or close")
        print(json.dumps(output), flush=True)


def new_event_loop():
    """Return a uvloop event loop when uvloop is installed, else asyncio's, so that the client costs less CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv=None):
    parser = argparse.ArgumentParser(description="Open a share of the reconnect storm's streams on commands from stdin.")
    parser.add_argument("--port", type=int, required=True, help="TCP port of the server on 127.0.0.1")
    parser.add_argument("--first", type=int, required=True, help="index of this process's first user")
    parser.add_argument("--count", type=int, required=True, help="number of streams this process opens")
    parser.add_argument("--timeout", type=float, required=True, help="seconds after the start that a stream may take to open")
    parser.add_argument("--format", choices=sorted(EVENT_FORMATS), default="plain", help="how the server writes events")
    args = parser.parse_args(argv)

    # Every stream is one socket.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    worker = StormWorker(args.port, args.first, args.count, args.timeout, event_format=EVENT_FORMATS[args.format])
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve_commands(worker))


class StormClients:
    """The processes of one storm against the server on ``port``: ``streams`` streams over ``processes`` processes."""

    def __init__(self, port, streams, processes, timeout, event_format=PLAIN):
        self.port = port
        self.format_name = next(name for name, value in EVENT_FORMATS.items() if value is event_format)
        self.streams = streams
        self.processes = max(1, min(processes, streams))
        self.timeout = timeout
        self.children = []

    async def start(self):
        """Start the processes and wait until each has built its requests."""
        share = math.ceil(self.streams / self.processes)
        for first in range(0, self.streams, share):
            count = min(share, self.streams - first)
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.storm",
                "--port", str(self.port), "--first", str(first), "--count", str(count), "--timeout", str(self.timeout),
                "--format", self.format_name,
                cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=LINE_LIMIT,
            )
            self.children.append(child)
        for child in self.children:
            line = await asyncio.wait_for(child.stdout.readline(), 120)
            if line.strip() != b"ready":
                raise RuntimeError(f"a storm client process failed to start: it printed {line[:200]!r}")

    async def _command(self, text, timeout):
        for child in self.children:
            child.stdin.write(text.encode() + b"\n")
            await child.stdin.drain()
        outputs = []
        for child in self.children:
            line = await asyncio.wait_for(child.stdout.readline(), timeout)
            if not line:
                raise RuntimeError(f"a storm client process exited during {text.split()[0]!r} with {await child.wait()}")
            outputs.append(json.loads(line))
        return outputs

    async def storm(self, delay=0.2):
        """Open every stream ``delay`` seconds from now and return the merged outcome of all processes."""
        start_at = time.time() + delay
        outputs = await self._command(f"go {start_at!r}", delay + self.timeout + 30)
        failures = {}
        for output in outputs:
            for reason, count in output["failures"].items():
                failures[reason] = failures.get(reason, 0) + count
        connected = sorted(value for output in outputs for value in output["connected_s"])
        first_bytes = sorted(value for output in outputs for value in output["first_bytes_s"])
        opened = sorted(value for output in outputs for value in output["opened_s"])
        return {
            "streams": sum(output["streams"] for output in outputs),
            "opened": sum(output["opened"] for output in outputs),
            "failed": sum(failures.values()),
            "failures": failures,
            "client_processes": len(outputs),
            "last_connected_s": connected[-1] if connected else None,
            "last_first_bytes_s": first_bytes[-1] if first_bytes else None,
            "last_opened_s": opened[-1] if opened else None,
            "p50_opened_s": opened[len(opened) // 2] if opened else None,
            "seconds": max(output["seconds"] for output in outputs),
            "client_cpu_seconds": sum(output["cpu_seconds"] for output in outputs),
            "client_cpu_seconds_max": max(output["cpu_seconds"] for output in outputs),
        }

    async def check(self, broadcasts, timeout, linger):
        """Return a ``StreamCheck`` of ``broadcasts`` broadcasts over the opened streams of every process."""
        outputs = await self._command(f"check {broadcasts} {timeout!r} {linger!r}", timeout + linger + 30)
        merged = StreamCheck()
        for output in outputs:
            for name in CHECK_FIELDS:
                setattr(merged, name, getattr(merged, name) + output[name])
            first, last = output["first_published"], output["last_received"]
            if first is not None and (merged.first_published is None or first < merged.first_published):
                merged.first_published = first
            if last is not None and (merged.last_received is None or last > merged.last_received):
                merged.last_received = last
        return merged

    async def close(self):
        """Ask every process to close its streams and exit; kill those that do not within 30 s."""
        for child in self.children:
            if child.returncode is None:
                try:
                    child.stdin.write(b"close\n")
                    await child.stdin.drain()
                except (BrokenPipeError, ConnectionResetError):
                    pass
        for child in self.children:
            try:
                await asyncio.wait_for(child.wait(), 30)
            except asyncio.TimeoutError:
                child.kill()
                await child.wait()
        self.children = []


if __name__ == "__main__":
    main()
