"""
Start ``manage.py runsse`` as a child process, the way an operator runs it.
"""

import json
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

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "test-jwt-secret-" + "0123456789abcdef" * 4


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """
    One ``runsse`` process on free ports, logging at info level; extra
    keyword arguments become environment variables (an empty value unsets).

    ``python`` and ``cwd`` choose the interpreter and the directory of
    ``manage.py``, by default this interpreter and this repository.
    """

    def __init__(self, nats_url, *, args=(), python=sys.executable, cwd=ROOT, **environment):
        self.http_port = free_port()
        self.debug_port = free_port()
        self.args = list(args)
        self.python = python
        self.cwd = cwd
        self.environment = {
            "DJANGO_SETTINGS_MODULE": "ssesite.settings",
            "SSE_JWT_SECRET": JWT_SECRET,
            "SSE_EVENTS_ENDPOINT": nats_url,
            "SSE_HTTP_ADDR": f"127.0.0.1:{self.http_port}",
            "SSE_DEBUG_ADDR": f"127.0.0.1:{self.debug_port}",
            "SSE_LOG_LEVEL": "info",
            **environment,
        }
        self.process = None
        self.log = tempfile.NamedTemporaryFile(prefix="runsse-", suffix=".log", delete=False)

    def start(self, ready_timeout=20.0):
        env = {key: value for key, value in os.environ.items() if not key.startswith(("SSE_", "OCIS_"))}
        env.update(self.environment)
        self.process = subprocess.Popen(
            [self.python, "manage.py", "runsse", *self.args],
            cwd=self.cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait_until(lambda: self.get("/readyz")[0] == 200, ready_timeout, "ready")
        return self

    def wait_until(self, condition, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"runsse exited with {self.process.returncode}:\n{self.output()}")
            try:
                if condition():
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"runsse was not {what} within {timeout}s:\n{self.output()}")

    def get(self, path):
        """GET ``path`` on the debug server; return (status, body)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.debug_port}{path}", timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def metric(self, name):
        """Return the value of the metric sample ``name`` (with labels, as printed)."""
        _, body = self.get("/metrics")
        for line in body.decode().splitlines():
            sample, _, value = line.rpartition(" ")
            if sample == name:
                return float(value)
        raise KeyError(name)

    def stop(self, timeout=10.0, stop_signal=signal.SIGTERM):
        """Send ``stop_signal`` and return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"runsse did not stop within {timeout}s:\n{self.output()}")
        return self.process.returncode

    def output(self):
        return Path(self.log.name).read_text(errors="replace")


def envelope_json(path):
    return json.loads((ROOT / "tests" / "data" / path).read_text())
