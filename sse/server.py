"""
The ``runsse`` process: daphne serving the streams and the debug server,
and the NATS bridge, all on one event loop.
"""

# daphne.server installs Twisted's asyncio reactor; it must be imported
# before anything imports twisted.internet.reactor.
import daphne.server  # isort: skip

import asyncio
import logging
import resource

from twisted.internet import defer, reactor

from . import tls
from .bridge import Bridge
from .debug import DebugApplication, PortRouter
from .embedded_nats import EmbeddedNATS
from .exceptions import SSEError
from .status import status

logger = logging.getLogger(__name__)

# Enough queued connections to survive every client reconnecting at once;
# the kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 4096

# How long shutdown waits for stream consumers to end.
APPLICATION_CLOSE_TIMEOUT_SECONDS = 5


def endpoint_description(address, tls_files=None):
    """
    Return the Twisted endpoint string that listens on ``address`` with our
    listen backlog, over TLS with ``tls_files`` (a ``tls.TLSFiles``) if given.
    """
    options = [f"port={address.port}"]
    if address.host:
        options.append(f"interface={_escape(address.host)}")
    options.append(f"backlog={LISTEN_BACKLOG}")
    if tls_files is None:
        return ":".join(["tcp", *options])

    options.append(f"privateKey={_escape(tls_files.key)}")
    options.append(f"certKey={_escape(tls_files.certificate)}")
    if tls_files.chain:
        options.append(f"extraCertChain={_escape(tls_files.chain)}")
    return ":".join(["ssl", *options])


def _escape(value):
    # Endpoint strings separate options with ":" and "=", which IPv6
    # addresses and file paths may contain, so values escape them with a backslash.
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def raise_open_file_limit():
    """Raise the soft limit of open files to the hard limit; every stream uses one socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:
            logger.warning("Could not raise the open file limit from %s to %s: %s", soft, hard, error)
    return soft


class Service:
    """
    Run the HTTP server, the debug server and the bridge until SIGTERM or
    SIGINT.

    ``application`` is the ASGI application for ``SSE_HTTP_ADDR``.
    """

    def __init__(self, config, application, *, embedded_nats=False):
        self.config = config
        self.application = application
        self.embedded_nats = EmbeddedNATS(config.events_endpoint[0]) if embedded_nats else None
        self.bridge = None
        self.bridge_task = None

    def run(self):
        """
        Serve until stopped; raises ``SSEError`` if a port could not be
        bound or the TLS certificate or key cannot be used.
        """
        open_files = raise_open_file_limit()
        with tls.server_tls_files(self.config) as tls_files:
            if self.embedded_nats is not None:
                self.embedded_nats.start()
            try:
                self._serve(open_files, tls_files)
            finally:
                if self.embedded_nats is not None:
                    self.embedded_nats.stop()

    def _serve(self, open_files, tls_files):
        self.bridge = status.bridge = Bridge(self.config)
        debug = DebugApplication({"nats": lambda: self.bridge.ready})
        endpoints = [
            endpoint_description(self.config.http_addr, tls_files),
            endpoint_description(self.config.debug_addr),
        ]
        server = daphne.server.Server(
            PortRouter(self.application, debug, self.config.debug_addr.port),
            endpoints=endpoints,
            signal_handlers=True,
            http_timeout=None,
            application_close_timeout=APPLICATION_CLOSE_TIMEOUT_SECONDS,
            server_name="sse",
        )

        reactor.callWhenRunning(self._start_bridge)
        reactor.addSystemEventTrigger("before", "shutdown", self._stop_bridge)
        logger.info(
            "Starting sse: streams on %s://%s, debug server on http://%s, NATS %s, open file limit %s",
            "http" if tls_files is None else "https",
            self.config.http_addr,
            self.config.debug_addr,
            ",".join(self.config.events_endpoint),
            open_files,
        )
        server.run()

        if len(server.listening_addresses) < len(endpoints):
            raise SSEError(f"could not listen on {self.config.http_addr} and {self.config.debug_addr}; see the log above")
        logger.info("Stopped sse")

    def _start_bridge(self):
        self.bridge_task = asyncio.ensure_future(self.bridge.run())

    def _stop_bridge(self):
        async def stop():
            await self.bridge.stop()
            if self.bridge_task is not None:
                self.bridge_task.cancel()
                try:
                    await self.bridge_task
                except asyncio.CancelledError:
                    pass

        return defer.Deferred.fromFuture(asyncio.ensure_future(stop()))
