"""
End-to-end registration of ``runsse`` in the nats-js-kv service registry,
read back from the bucket the way the oCIS proxy reads it. Each test runs
its own nats-server, so that the bucket contains only its own entries.
"""

import asyncio
import base64
import json
import re
import signal
import time

import nats
import nats.js.errors
import pytest
from nats.js.api import StorageType

import sse
from sse.embedded_nats import EmbeddedNATS

from .service import ServiceProcess, free_port
from .test_service_e2e import run_command

PREFIX = "com.owncloud.sse.sse@"
# Short enough that a test outlives several TTLs in a few seconds.
FAST_REGISTRY = {"EXPERIMENTAL_REGISTER_TTL": "2s", "EXPERIMENTAL_REGISTER_INTERVAL": "500ms"}


@pytest.fixture
def own_nats(tmp_path):
    server = EmbeddedNATS(f"nats://127.0.0.1:{free_port()}", store_dir=str(tmp_path / "jetstream"))
    server.start()
    yield server
    server.stop()


def url_of(server):
    return f"nats://127.0.0.1:{server.port}"


async def read_registry(url, **credentials):
    """
    Return ``{key: (service, revision)}`` of the entries of com.owncloud.sse.sse.

    It works like go-micro's nats-js-kv store. It lists the keys without
    delete markers and decodes each from base32. Then it drops the
    ``service-registry_`` table prefix, keeps the keys that start with the
    service name and an ``@``, and unwraps the service JSON from ``data``.
    """
    connection = await nats.connect(url, **credentials)
    try:
        js = connection.jetstream()
        try:
            bucket = await js.key_value("service-registry")
        except nats.js.errors.BucketNotFoundError:
            return {}
        # nats-py's KeyValue.keys() can return no keys at all while a key is
        # rewritten, so the keys come from the subjects of the bucket's stream.
        info = await js.stream_info("KV_service-registry", subjects_filter="$KV.service-registry.>")
        nats_keys = [subject.removeprefix("$KV.service-registry.") for subject in info.state.subjects or {}]

        entries = {}
        for nats_key in nats_keys:
            full_key = base64.b32decode(nats_key).decode()
            assert full_key.startswith("service-registry_")
            key = full_key.removeprefix("service-registry_")
            if not key.startswith(PREFIX):
                continue
            try:
                entry = await bucket.get(nats_key)
            except (nats.js.errors.KeyDeletedError, nats.js.errors.KeyNotFoundError):
                # A delete marker, or an entry that expired since the listing.
                continue
            envelope = json.loads(entry.value)
            assert envelope["key"] == key
            entries[key] = (json.loads(base64.b64decode(envelope["data"])), entry.revision)
        return entries
    finally:
        await connection.close()


async def wait_for_registry(url, condition, timeout, expectation, **credentials):
    deadline = time.monotonic() + timeout
    while True:
        entries = await read_registry(url, **credentials)
        if condition(entries):
            return entries
        if time.monotonic() > deadline:
            raise AssertionError(f"the registry did not {expectation} within {timeout}s: {entries}")
        await asyncio.sleep(0.1)


async def bucket_config(url):
    connection = await nats.connect(url)
    try:
        return (await connection.jetstream().stream_info("KV_service-registry")).config
    finally:
        await connection.close()


async def test_entry_read_as_proxy(own_nats):
    url = url_of(own_nats)
    service = ServiceProcess(url).start()
    try:
        entries = await wait_for_registry(url, bool, 10, "show the entry")
    finally:
        assert service.stop() == 0

    ((key, (registered, _)),) = entries.items()
    name, node_uuid, version = key.split("@")
    assert name == "com.owncloud.sse.sse"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", node_uuid)
    assert version == sse.__version__
    assert registered["name"] == "com.owncloud.sse.sse"
    assert registered["version"] == sse.__version__
    assert registered["endpoints"] == []
    (node,) = registered["nodes"]
    assert node["id"] == f"com.owncloud.sse.sse-{node_uuid}"
    assert node["address"] == f"127.0.0.1:{service.http_port}"
    assert node["metadata"] == {"protocol": "http", "registry": "nats-js-kv", "server": "http", "transport": "http"}

    config = await bucket_config(url)
    assert config.max_age == 30.0
    assert config.storage == StorageType.MEMORY


async def test_entry_deleted_on_sigterm(own_nats):
    url = url_of(own_nats)
    service = ServiceProcess(url).start()
    await wait_for_registry(url, bool, 10, "show the entry")

    assert service.stop(stop_signal=signal.SIGTERM) == 0

    assert await read_registry(url) == {}
    assert "Deleted com.owncloud.sse.sse at 127.0.0.1:%d from the service registry" % service.http_port in service.output()


async def test_refresh_outlives_ttl(own_nats):
    url = url_of(own_nats)
    service = ServiceProcess(url, **FAST_REGISTRY).start()
    try:
        entries = await wait_for_registry(url, bool, 10, "show the entry")
        ((key, (_, first_revision)),) = entries.items()

        # Three times the 2 s TTL: the entry must be there at every look.
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            assert key in await read_registry(url)
            await asyncio.sleep(0.25)
        _, last_revision = (await read_registry(url))[key]
        assert last_revision > first_revision
    finally:
        assert service.stop(stop_signal=signal.SIGKILL) == -signal.SIGKILL

    # A killed process cannot delete its entry, so the bucket's max age must drop it.
    assert (await bucket_config(url)).max_age == 2.0
    await wait_for_registry(url, lambda entries: key not in entries, 6, "drop the entry of a killed process")


async def test_reregisters_after_nats_restart(own_nats):
    url = url_of(own_nats)
    service = ServiceProcess(url, **FAST_REGISTRY).start()
    try:
        entries = await wait_for_registry(url, bool, 10, "show the entry")
        (key,) = entries

        own_nats.stop()
        await asyncio.to_thread(
            service.wait_until, lambda: service.metric("sse_registry_registered") == 0, 15, "unregistered"
        )
        # Long enough for several failed attempts.
        await asyncio.sleep(4)
        own_nats.start()

        # The restarted server has lost the in-memory bucket, so the entry
        # is back only if the service wrote it again.
        await wait_for_registry(url, lambda entries: key in entries, 20, "show the entry again")
        await asyncio.to_thread(
            service.wait_until, lambda: service.metric("sse_registry_registered") == 1, 5, "registered"
        )
    finally:
        assert service.stop() == 0

    output = service.output()
    failures = re.findall(r"Could not register com\.owncloud\.sse\.sse in the service registry .*", output)
    assert failures
    assert len(failures) == len(set(failures)), failures
    attempts = int(re.search(r"Registered com\.owncloud\.sse\.sse at \S+ again after (\d+) failed attempts", output).group(1))
    assert attempts > len(failures)


async def test_registry_none_registers_nothing(own_nats):
    url = url_of(own_nats)
    service = ServiceProcess(url, SSE_REGISTRY="none").start()
    try:
        # The bridge is ready, so a registration would have been written by now.
        await asyncio.sleep(1)
        assert await read_registry(url) == {}
        assert service.metric("sse_registry_registered") == 0
    finally:
        assert service.stop() == 0


async def test_advertise_addr_registered(own_nats):
    url = url_of(own_nats)
    service = ServiceProcess(url, SSE_REGISTRY_ADVERTISE_ADDR="sse.internal:8135", OCIS_HTTP_TLS_ENABLED="true")
    try:
        service.start()
        entries = await wait_for_registry(url, bool, 10, "show the entry")
    finally:
        assert service.stop() == 0

    ((registered, _),) = entries.values()
    (node,) = registered["nodes"]
    assert node["address"] == "sse.internal:8135"
    assert node["metadata"]["use_tls"] == "true"


async def test_registry_on_own_server_with_credentials(own_nats, tmp_path):
    events_url = url_of(own_nats)
    registry_server = EmbeddedNATS(
        f"nats://127.0.0.1:{free_port()}",
        store_dir=str(tmp_path / "registry"),
        extra_args=["--user", "registry-user", "--pass", "registry-password"],
    )
    registry_server.start()
    registry_url = url_of(registry_server)
    credentials = {"user": "registry-user", "password": "registry-password"}
    service = ServiceProcess(
        events_url,
        MICRO_REGISTRY_ADDRESS=f"127.0.0.1:{registry_server.port}",
        MICRO_REGISTRY_AUTH_USERNAME="registry-user",
        MICRO_REGISTRY_AUTH_PASSWORD="registry-password",
    )
    try:
        service.start()
        await wait_for_registry(registry_url, bool, 10, "show the entry", **credentials)
        assert await read_registry(events_url) == {}
    finally:
        assert service.stop() == 0
        registry_server.stop()
    assert "registry-password" not in service.output()


def test_invalid_registry_stops_startup(nats_url):
    result = run_command("runsse", SSE_EVENTS_ENDPOINT=nats_url, SSE_JWT_SECRET="secret", SSE_REGISTRY="kubernetes")

    assert result.returncode == 1
    assert "SSE_REGISTRY='kubernetes' is invalid: expected nats-js-kv" in result.stderr
