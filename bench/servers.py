"""
The servers under test, each started as a child process on free ports of
127.0.0.1, and the NATS server they share.
"""

import asyncio
import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nats
import nats.js.errors
import redis

from sse.embedded_nats import EmbeddedNATS, find_nats_server

from .client import DJANGO_EVENTSTREAM, PLAIN

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "bench-jwt-secret-" + "0123456789abcdef" * 4


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_nats():
    """Start a nats-server with JetStream on a free port, so that no other traffic mixes in."""
    server = EmbeddedNATS(f"nats://127.0.0.1:{free_port()}")
    server.start()
    return server, f"nats://127.0.0.1:{server.port}"


def rss_bytes(pid):
    """Return the resident set size of process ``pid`` from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")


def cpu_seconds(pid):
    """Return the user plus system CPU time of process ``pid`` from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5), counted from 1.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """
    A server under test: ``command`` run with ``environment``, ready once
    ``ready_url`` returns 200 and every callable of ``ready_checks`` returns
    true, writing events in ``event_format`` (a ``bench.client.EventFormat``).
    ``companions`` are processes that the server needs, such as its Redis.
    They start before the server and stop after it.
    """

    def __init__(self, name, command, environment, port, ready_url, event_format=PLAIN):
        self.name = name
        self.command = command
        self.environment = environment
        self.port = port
        self.ready_url = ready_url
        self.event_format = event_format
        self.ready_checks = []
        self.companions = []
        self.process = None
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)

    @property
    def pid(self):
        return self.process.pid

    def start(self, timeout=30.0):
        for companion in self.companions:
            companion.start()
        env = {key: value for key, value in os.environ.items() if not key.startswith(("SSE_", "OCIS_"))}
        env.update(self.environment)
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.output()}")
            if self._ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f}s:\n{self.output()}")

    def _ready(self):
        try:
            with urllib.request.urlopen(self.ready_url, timeout=2) as response:
                if response.status != 200:
                    return False
        except (OSError, urllib.error.URLError):
            return False
        return all(check() for check in self.ready_checks)

    def rss(self):
        return rss_bytes(self.pid)

    def cpu(self):
        return cpu_seconds(self.pid)

    def companion_cpu(self):
        """Return the CPU time of the companion processes in seconds, or None when there are none."""
        if not self.companions:
            return None
        return sum(cpu_seconds(companion.pid) for companion in self.companions)

    def stop(self, timeout=20.0):
        try:
            self._stop_server(timeout)
        finally:
            for companion in self.companions:
                companion.stop()

    def _stop_server(self, timeout):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def gc_pauses_ms(self):
        """Return the durations of the collections that ``bench.gclog`` logged, in milliseconds."""
        text = Path(self.log.name).read_text(errors="replace")
        return [float(line.split(" took ")[1].split(" ms")[0]) for line in text.splitlines() if line.startswith("gc: ")]

    def output(self):
        return Path(self.log.name).read_text(errors="replace")[-4000:]


def _gc_wrapper(gc_log, gc_disable):
    """Return the interpreter arguments that run a server under ``bench.gclog``, if either option is on."""
    if gc_disable:
        return ["-m", "bench.gclog", "--disable"]
    if gc_log:
        return ["-m", "bench.gclog"]
    return []


def runsse(nats_url, *, profile=False, gc_log=False, gc_disable=False, name="runsse", **environment):
    """
    Return ``manage.py runsse`` with the in-memory channel layer, logging
    warnings and errors only, not yet started. ``environment`` adds or
    overrides variables. ``gc_log`` runs it under
    ``bench.gclog``, which logs slow garbage collections, and ``gc_disable``
    turns the cyclic garbage collector off.
    """
    port, debug_port = free_port(), free_port()
    env = {
        "DJANGO_SETTINGS_MODULE": "ssesite.settings",
        "SSE_JWT_SECRET": JWT_SECRET,
        "SSE_EVENTS_ENDPOINT": nats_url,
        "SSE_HTTP_ADDR": f"127.0.0.1:{port}",
        "SSE_DEBUG_ADDR": f"127.0.0.1:{debug_port}",
        "SSE_LOG_LEVEL": "warn",
        "SSE_DEBUG_PPROF": "true" if profile else "false",
        **environment,
    }
    command = [sys.executable, *_gc_wrapper(gc_log, gc_disable), "manage.py", "runsse"]
    server = ServerProcess(name, command, env, port, f"http://127.0.0.1:{debug_port}/readyz")
    server.debug_port = debug_port
    return server


class RedisServer:
    """
    A private ``redis-server`` on a free port of 127.0.0.1, without
    persistence. Redis pub/sub channels are global to a server, so the
    benchmark never shares one with other programs.
    """

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None
        self.directory = None

    @property
    def pid(self):
        return self.process.pid

    def start(self, timeout=10.0):
        program = shutil.which("redis-server")
        if program is None:
            raise RuntimeError("redis-server was not found on PATH; install it, for example Debian's redis-server package")
        self.directory = tempfile.TemporaryDirectory(prefix="bench-redis-")
        command = [
            program, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self.directory.name,
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode} on port {self.port}")
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"redis-server did not accept connections on port {self.port} within {timeout:.0f}s")

    def stop(self, timeout=10.0):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.directory is not None:
            self.directory.cleanup()
            self.directory = None


def jetstream_consumer_exists(nats_url, name, stream="main-queue"):
    """Return whether JetStream has the consumer ``name`` on ``stream``, even when called inside an event loop."""

    async def look_up():
        connection = await nats.connect(nats_url)
        try:
            await connection.jetstream().consumer_info(stream, name)
            return True
        except nats.js.errors.NotFoundError:
            return False
        finally:
            await connection.close()

    # The runner calls start() from its event loop, so the look-up runs
    # on a loop of its own in another thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(look_up())).result()


def runsse_redis(nats_url, *, gc_log=False, gc_disable=False, **environment):
    """
    Return ``runsse`` with the channels-redis pub/sub layer on a private
    ``redis-server``, not yet started. It runs the bridge and the streams
    in one process, as in shared mode with one process, and its durable
    consumer has a name of its own, so that no earlier run's leader key or
    acknowledgement floor applies. It counts as ready once it has taken
    the lead and created that consumer, because events published before
    then would not reach it.
    """
    redis_server = RedisServer()
    consumer = f"bench-{uuid.uuid4().hex[:12]}"
    server = runsse(
        nats_url, gc_log=gc_log, gc_disable=gc_disable, name="runsse-redis",
        SSE_CHANNEL_LAYER_URL=redis_server.url, SSE_CONSUMER_NAME=consumer, **environment,
    )
    server.companions.append(redis_server)
    server.ready_checks.append(lambda: jetstream_consumer_exists(nats_url, consumer))
    return server


def floor(nats_url, *, gc_log=False, gc_disable=False):
    """Return the raw-ASGI floor server of ``bench.floor`` on uvicorn, not yet started."""
    port = free_port()
    command = [sys.executable, *_gc_wrapper(gc_log, gc_disable), "-m", "bench.floor", "--port", str(port), "--nats", nats_url, "--jwt-secret", JWT_SECRET]
    return ServerProcess("floor", command, {}, port, f"http://127.0.0.1:{port}/ready")


def eventstream(nats_url, *, gc_log=False, gc_disable=False):
    """
    Return the django-eventstream project of ``bench.eventstream_site`` on
    daphne, as django-eventstream's README deploys it, not yet started.
    """
    port = free_port()
    env = {
        "DJANGO_SETTINGS_MODULE": "bench.eventstream_site.settings",
        "BENCH_NATS_URL": nats_url,
        "BENCH_JWT_SECRET": JWT_SECRET,
    }
    # Verbosity 0 turns off daphne's access log. runsse writes none either.
    command = [
        sys.executable, *_gc_wrapper(gc_log, gc_disable), "-m", "daphne", "--verbosity", "0",
        "--bind", "127.0.0.1", "--port", str(port), "bench.eventstream_site.asgi:application",
    ]
    return ServerProcess("eventstream", command, env, port, f"http://127.0.0.1:{port}/ready", DJANGO_EVENTSTREAM)


SERVERS = {"runsse": runsse, "runsse-redis": runsse_redis, "floor": floor, "eventstream": eventstream}
