"""
The ``runsse`` process: daphne serving the streams and the debug server,
and the NATS bridge, all on one event loop.
"""

# daphne.server installs Twisted's asyncio reactor; it must be imported
# before anything imports twisted.internet.reactor.
import daphne.server  # isort: skip

import asyncio
import gc
import logging
import resource

from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer
from channels.layers import channel_layers, get_channel_layer
from twisted.internet import defer, reactor

from . import tls
from .bridge import Bridge
from .debug import DebugApplication, PortRouter
from .embedded_nats import EmbeddedNATS
from .exceptions import SSEError
from .flow import EXTENSION as FLOW_CONTROL, flow_control_factory, send_eagerly
from .history import history
from .layers import InMemoryChannelLayer, RedisPubSubChannelLayer
from .redis_watch import RedisWatch
from .registration import Registration
from .replay import replay
from .parsing import redact_url
from .status import status
from .tracing import setup_tracing, shutdown_tracing

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


# With thousands of streams, every full garbage collection walks millions
# of live objects and stops the event loop for up to a second (measured at
# 10,000 streams, see docs/benchmarks.md). Collecting much less often keeps
# those pauses rare; cycles of ended streams are still collected.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collection():
    """Move the objects of start-up out of the collector's way and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


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


def configure_channel_layer(config):
    """
    Return the channel layer of this process: a channels-redis pub/sub
    layer on ``SSE_CHANNEL_LAYER_URL`` when it is set, else the layer of
    ``settings.CHANNEL_LAYERS``.
    """
    if config.channel_layer_url:
        channel_layers.set(DEFAULT_CHANNEL_LAYER, RedisPubSubChannelLayer(hosts=[config.channel_layer_url]))
    return get_channel_layer()


def is_process_local(layer):
    """Return whether ``layer`` reaches only the consumers of this process."""
    return isinstance(layer, (InMemoryChannelLayer, ChannelsInMemoryChannelLayer))


async def end_local_streams():
    """Ask every stream of this process to end with a ``retry:``, so that its client reconnects."""
    layer = get_channel_layer()
    channels = list(status.channels)
    for channel in channels:
        try:
            await layer.send(channel, {"type": "sse.shutdown"})
        except Exception as error:
            logger.warning("Could not ask a stream to end: %s", error)
    if channels:
        logger.info("Ending %d streams", len(channels))


class StreamServer(daphne.server.Server):
    """
    daphne's server with two additions for long-lived streams: each HTTP
    request gets the ``sse.flow_control`` scope extension (see
    ``sse.flow``), and at shutdown the streams are ended gracefully before
    daphne cancels what is left.
    """

    def __init__(self, *args, stream_port, drain_timeout, **kwargs):
        super().__init__(*args, **kwargs)
        self.stream_port = stream_port
        self.drain_timeout = drain_timeout
        self.ports = []
        self.draining = False

    def listen_success(self, port):
        self.ports.append(port)
        send_eagerly(port)
        super().listen_success(port)

    def create_application(self, protocol, scope):
        if scope.get("type") == "http":
            scope.setdefault("extensions", {})[FLOW_CONTROL] = flow_control_factory(protocol)
        return super().create_application(protocol, scope)

    def kill_all_applications(self):
        drained = defer.Deferred.fromFuture(asyncio.ensure_future(self.drain_streams()))
        drained.addErrback(lambda failure: logger.error("Ending the streams failed: %s", failure.getErrorMessage()))
        drained.addBoth(lambda _: super(StreamServer, self).kill_all_applications())
        return drained

    async def drain_streams(self):
        """Stop accepting streams, ask every open stream to end, and wait up to ``drain_timeout`` for them."""
        self.draining = True
        loop = asyncio.get_running_loop()
        for port in self.ports:
            if port.getHost().port == self.stream_port:
                await defer.maybeDeferred(port.stopListening).asFuture(loop)

        await end_local_streams()

        deadline = loop.time() + self.drain_timeout
        while status.channels and loop.time() < deadline:
            await asyncio.sleep(0.05)


class Service:
    """
    Run the HTTP server, the debug server and the bridge until SIGTERM or
    SIGINT.

    ``application`` is the ASGI application for ``SSE_HTTP_ADDR``. With
    ``serve_http=False`` the process runs only the bridge (and the debug
    server), with ``run_bridge=False`` only the streams; both need a
    channel layer that processes share.
    """

    def __init__(self, config, application, *, embedded_nats=False, serve_http=True, run_bridge=True):
        self.config = config
        self.application = application
        self.embedded_nats = EmbeddedNATS(config.events_endpoint[0]) if embedded_nats else None
        self.serve_http = serve_http
        self.run_bridge = run_bridge
        self.bridge = None
        self.bridge_task = None
        self.redis_watch = None
        self.registration = None

    def run(self):
        """
        Serve until stopped; raises ``SSEError`` if a port could not be
        bound or the TLS certificate or key cannot be used.
        """
        open_files = raise_open_file_limit()
        setup_tracing(self.config)
        history.configure(self.config.replay_max_events, self.config.replay_window, self.config.replay_max_bytes)
        replay.configure(self.config)
        try:
            with tls.server_tls_files(self.config) as tls_files:
                if self.embedded_nats is not None:
                    self.embedded_nats.start()
                try:
                    self._serve(open_files, tls_files)
                finally:
                    if self.embedded_nats is not None:
                        self.embedded_nats.stop()
        finally:
            shutdown_tracing()

    def _serve(self, open_files, tls_files):
        layer = configure_channel_layer(self.config)
        local = is_process_local(layer)
        if local and not (self.serve_http and self.run_bridge):
            raise SSEError(
                f"the channel layer {type(layer).__name__} reaches only this process, so the bridge and "
                "the streams must run together; set SSE_CHANNEL_LAYER_URL=redis://... to run them apart"
            )

        endpoints = [endpoint_description(self.config.debug_addr)]
        if self.serve_http:
            endpoints.insert(0, endpoint_description(self.config.http_addr, tls_files))
        if self.run_bridge:
            self.bridge = status.bridge = Bridge(self.config, layer, shared=not local)
        server = None

        def listening():
            ports = {port for _, port in server.listening_addresses}
            return self.config.http_addr.port in ports

        checks = {"shutdown": lambda: not server.draining}
        if self.serve_http:
            checks["http"] = listening
        if self.run_bridge:
            checks["nats"] = lambda: self.bridge.ready
        if self.config.channel_layer_url:
            self.redis_watch = RedisWatch(self.config.channel_layer_url, on_recovered=end_local_streams)
            checks["redis"] = lambda: self.redis_watch.ready
            reactor.callWhenRunning(self._start_redis_watch)
            reactor.addSystemEventTrigger("before", "shutdown", self._stop_redis_watch)
        debug = DebugApplication(
            self.config,
            health_checks={"http": listening} if self.serve_http else {},
            readiness_checks=checks,
        )
        server = StreamServer(
            PortRouter(self.application, debug, self.config.debug_addr.port),
            endpoints=endpoints,
            signal_handlers=True,
            http_timeout=None,
            application_close_timeout=APPLICATION_CLOSE_TIMEOUT_SECONDS,
            server_name="sse",
            stream_port=self.config.http_addr.port,
            drain_timeout=self.config.shutdown_timeout,
        )

        reactor.callWhenRunning(tune_garbage_collection)
        if self.run_bridge:
            reactor.callWhenRunning(self._start_bridge)
            reactor.addSystemEventTrigger("before", "shutdown", self._stop_bridge)
        reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.Deferred.fromFuture(asyncio.ensure_future(replay.close())))
        if self.config.registry and self.serve_http:
            self.registration = Registration(self.config)
            reactor.callWhenRunning(self._start_registration, listening)
            reactor.addSystemEventTrigger("before", "shutdown", self._stop_registration)
        logger.info(
            "Starting sse: streams on %s, debug server on http://%s, NATS %s, channel layer %s, open file limit %s",
            (f"{'http' if tls_files is None else 'https'}://{self.config.http_addr}" if self.serve_http else "none"),
            self.config.debug_addr,
            redact_url(",".join(self.config.events_endpoint)) if self.run_bridge else "not used for events",
            type(layer).__name__,
            open_files,
        )
        server.run()

        bound = {port for _, port in server.listening_addresses}
        expected = [self.config.debug_addr] + ([self.config.http_addr] if self.serve_http else [])
        missing = [str(address) for address in expected if address.port not in bound]
        if missing:
            raise SSEError(f"could not listen on {' and '.join(missing)}; see the log above")
        logger.info("Stopped sse")

    def _start_redis_watch(self):
        self.redis_watch_task = asyncio.ensure_future(self.redis_watch.run())

    def _stop_redis_watch(self):
        self.redis_watch_task.cancel()
        return defer.Deferred.fromFuture(asyncio.ensure_future(self.redis_watch.close()))

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
