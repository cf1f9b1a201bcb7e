"""
The servers under test, each started as a child process on free ports of
127.0.0.1, and the NATS server they share.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

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
    ``ready_url`` returns 200, writing events in ``event_format`` (a
    ``bench.client.EventFormat``).
    """

    def __init__(self, name, command, environment, port, ready_url, event_format=PLAIN):
        self.name = name
        self.command = command
        self.environment = environment
        self.port = port
        self.ready_url = ready_url
        self.event_format = event_format
        self.process = None
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)

    @property
    def pid(self):
        return self.process.pid

    def start(self, timeout=30.0):
        env = {key: value for key, value in os.environ.items() if not key.startswith(("SSE_", "OCIS_"))}
        env.update(self.environment)
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f}s:\n{self.output()}")

    def rss(self):
        return rss_bytes(self.pid)

    def cpu(self):
        return cpu_seconds(self.pid)

    def stop(self, timeout=20.0):
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


def runsse(nats_url, *, profile=False, gc_log=False, gc_disable=False, **environment):
    """
    Return ``manage.py runsse`` with the in-memory channel layer, logging
    warnings and errors only, not yet started. ``gc_log`` runs it under
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
    server = ServerProcess("runsse", command, env, port, f"http://127.0.0.1:{debug_port}/readyz")
    server.debug_port = debug_port
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


SERVERS = {"runsse": runsse, "floor": floor, "eventstream": eventstream}
