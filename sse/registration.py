"""
The registration of this process's stream server in the nats-js-kv
service registry, kept while ``runsse`` runs.

``sse.registry`` describes the layout of the entry.
"""

import asyncio
import contextlib
import logging
import uuid

import nats
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType

from . import __version__, metrics
from .advertise import advertised_address
from .parsing import redact_url
from .registry import (
    BUCKET,
    SERVICE_NAME,
    build_service,
    encode_key,
    encode_value,
    node_metadata,
    registry_connect_options,
    service_key,
)

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 2.0
CLOSE_TIMEOUT_SECONDS = 2.0
RETRY_MIN_SECONDS = 0.5
RETRY_MAX_SECONDS = 15.0


class Registration:
    """
    Keep the stream server of this process in the nats-js-kv registry.

    ``start()`` runs the registration as a task: it writes the entry,
    rewrites it every ``EXPERIMENTAL_REGISTER_INTERVAL`` and retries every
    failure with backoff, so the entry comes back when NATS does.
    ``stop()`` ends the task and deletes the entry.
    """

    def __init__(self, config, *, version=__version__):
        self.config = config
        self.node_uuid = str(uuid.uuid4())
        self.key = service_key(SERVICE_NAME, self.node_uuid, version)
        self.nats_key = encode_key(self.key)
        self.address = advertised_address(config)
        service = build_service(SERVICE_NAME, version, f"{SERVICE_NAME}-{self.node_uuid}", self.address, node_metadata(config))
        self.value = encode_value(self.key, service)
        self.connection = None
        self.registered = False
        self._task = None
        self._stopping = asyncio.Event()
        # Set to write the entry at once instead of at the next interval.
        self._refresh = asyncio.Event()
        # The failures since the last successful write, and the messages of
        # those already logged, so that each is logged once while NATS is away.
        self._failures = 0
        self._logged_errors = set()
        self._checked_bucket_ttl = None

    @property
    def registered(self):
        """Whether the last write of the entry succeeded."""
        return self._registered

    @registered.setter
    def registered(self, value):
        self._registered = value
        metrics.REGISTRY_REGISTERED.set(1 if value else 0)

    def start(self):
        """Start registering in a task of the running event loop."""
        self._task = asyncio.ensure_future(self.run())

    async def run(self):
        """Write the entry, then refresh it until ``stop()``. Failures are retried with backoff."""
        delay = RETRY_MIN_SECONDS
        while not self._stopping.is_set():
            try:
                await self._connect()
                await self._register()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._report_failure(error)
                await self._wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue

            delay = RETRY_MIN_SECONDS
            await self._wait(self.config.registry_interval)

    async def stop(self):
        """End the task, delete the entry and close the connection. Failures are logged, not raised."""
        self._stopping.set()
        if self._task is not None:
            # Cancel before deleting, so that no write still under way can
            # put the entry back.
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

        connection, self.connection = self.connection, None
        if connection is None or connection.is_closed:
            return
        await self._deregister(connection)
        try:
            await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT_SECONDS)
        except Exception as error:
            logger.warning("Could not close the registry's NATS connection: %s", str(error) or type(error).__name__)

    async def _wait(self, seconds):
        waits = [asyncio.ensure_future(self._stopping.wait()), asyncio.ensure_future(self._refresh.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        self._refresh.clear()

    async def _connect(self):
        if self.connection is not None and not self.connection.is_closed:
            return
        self.connection = await nats.connect(
            **registry_connect_options(self.config),
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )

    async def _register(self):
        js = self.connection.jetstream(timeout=REQUEST_TIMEOUT_SECONDS)
        bucket = await self._bucket(js)
        if not self.registered:
            await self._check_bucket_ttl(bucket)
        await bucket.put(self.nats_key, self.value)

        if self.registered:
            return
        self.registered = True
        if self._failures:
            logger.info("Registered %s at %s again after %d failed attempts", SERVICE_NAME, self.address, self._failures)
        else:
            logger.info("Registered %s at %s in the service registry as node %s", SERVICE_NAME, self.address, self.node_uuid)
        self._failures = 0
        self._logged_errors.clear()

    async def _bucket(self, js):
        """Return the registry bucket, created with the storage and max age of oCIS when it is missing."""
        try:
            return await js.key_value(BUCKET)
        except nats.js.errors.BucketNotFoundError:
            pass
        try:
            bucket = await js.create_key_value(
                KeyValueConfig(
                    bucket=BUCKET,
                    description="go-micro service registry",
                    ttl=self.config.registry_ttl,
                    storage=StorageType.MEMORY,
                )
            )
        except nats.js.errors.BadRequestError:
            # An oCIS service created it at the same moment.
            return await js.key_value(BUCKET)
        logger.info("Created the key-value bucket %s with a max age of %gs", BUCKET, self.config.registry_ttl)
        return bucket

    async def _check_bucket_ttl(self, bucket):
        ttl = (await bucket.status()).ttl or 0
        if ttl == self._checked_bucket_ttl:
            return
        self._checked_bucket_ttl = ttl
        if not ttl:
            logger.warning(
                "The bucket %s has no max age, so the entry of a process that dies without deleting it is never removed", BUCKET
            )
        elif ttl <= self.config.registry_interval:
            logger.warning(
                "The bucket %s drops entries after %gs, before the refresh every %gs, "
                "so set EXPERIMENTAL_REGISTER_INTERVAL below it",
                BUCKET,
                ttl,
                self.config.registry_interval,
            )

    async def _deregister(self, connection):
        if not connection.is_connected:
            logger.warning(
                "Could not delete %s from the service registry because NATS is not connected, "
                "so it stays until the bucket's max age runs out",
                SERVICE_NAME,
            )
            return
        try:
            bucket = await connection.jetstream(timeout=REQUEST_TIMEOUT_SECONDS).key_value(BUCKET)
            await bucket.delete(self.nats_key)
        except Exception as error:
            logger.warning(
                "Could not delete %s from the service registry, so it stays until the bucket's max age runs out: %s",
                SERVICE_NAME,
                str(error) or type(error).__name__,
            )
            return
        self.registered = False
        logger.info("Deleted %s at %s from the service registry", SERVICE_NAME, self.address)

    def _report_failure(self, error):
        """Log a failure unless one with the same message was logged since the last success."""
        self.registered = False
        self._failures += 1
        text = str(error) or type(error).__name__
        if text in self._logged_errors:
            logger.debug("Registering %s failed again: %s", SERVICE_NAME, text)
            return
        self._logged_errors.add(text)
        logger.warning(
            "Could not register %s in the service registry at %s, retrying with backoff: %s",
            SERVICE_NAME,
            redact_url(",".join(registry_connect_options(self.config)["servers"])),
            text,
        )

    async def _on_error(self, error):
        # While NATS is unreachable, nats-py reports each reconnect attempt,
        # and the registration loop already logs the failures that matter.
        logger.debug("Registry NATS error: %s", error)

    async def _on_disconnected(self):
        if not self._stopping.is_set():
            logger.debug("The registry's NATS connection was lost")

    async def _on_reconnected(self):
        # A restarted NATS server has lost the in-memory bucket, so the
        # entry is written again at once instead of at the next interval.
        logger.info("Reconnected to the registry's NATS at %s:%s", self.connection.connected_url.hostname, self.connection.connected_url.port)
        self._refresh.set()
