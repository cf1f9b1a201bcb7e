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

from daphne.endpoints import build_endpoint_description_strings
from twisted.internet import defer, reactor

from .bridge import Bridge
from .debug import DebugApplication, PortRouter
from .embedded_nats import EmbeddedNATS
from .exceptions import SSEError
from .registration import Registration
from .status import status
from .tracing import setup_tracing, shutdown_tracing

logger = logging.getLogger(__name__)

# Enough queued connections to survive every client reconnecting at once;
# the kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 4096

# How long shutdown waits for stream consumers to end.
APPLICATION_CLOSE_TIMEOUT_SECONDS = 5


def endpoint_description(address):
    """Return the Twisted endpoint string for ``address`` with our listen backlog."""
    (description,) = build_endpoint_description_strings(host=address.host or None, port=address.port)
    if not address.host:
        description = f"tcp:port={address.port}"
    return f"{description}:backlog={LISTEN_BACKLOG}"


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
        self.registration = None

    def run(self):
        """Serve until stopped; raises ``SSEError`` if a port could not be bound."""
        open_files = raise_open_file_limit()
        setup_tracing(self.config)
        if self.embedded_nats is not None:
            self.embedded_nats.start()
        try:
            self._serve(open_files)
        finally:
            if self.embedded_nats is not None:
                self.embedded_nats.stop()
            shutdown_tracing()

    def _serve(self, open_files):
        self.bridge = status.bridge = Bridge(self.config)
        endpoints = [endpoint_description(self.config.http_addr), endpoint_description(self.config.debug_addr)]
        server = None

        def listening():
            ports = {port for _, port in server.listening_addresses}
            return self.config.http_addr.port in ports

        debug = DebugApplication(
            self.config,
            health_checks={"http": listening},
            readiness_checks={"http": listening, "nats": lambda: self.bridge.ready},
        )
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
        if self.config.registry:
            self.registration = Registration(self.config)
            reactor.callWhenRunning(self._start_registration, listening)
            reactor.addSystemEventTrigger("before", "shutdown", self._stop_registration)
        logger.info(
            "Starting sse: streams on %s, debug server on %s, NATS %s, open file limit %s",
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

    def _start_registration(self, listening):
        # Daphne binds its ports before the reactor runs, so the check shows
        # whether the proxy would find a server at the registered address.
        if listening():
            self.registration.start()

    def _stop_registration(self):
        return defer.Deferred.fromFuture(asyncio.ensure_future(self.registration.stop()))
