"""
End-to-end behaviour of the ``runsse`` process: start-up, keep-alives,
readiness, shutdown, the embedded NATS server and the helper commands.
"""

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from sse.wire import encode_envelope

from .conftest import token_for
from .test_delivery import wait_for_metric
from .http import request
from .service import ROOT, ServiceProcess, free_port

OPENING = b": stream opened\n\n"
KEEPALIVE = b": keepalive\n\n"


def run_command(*args, **environment):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SSE_", "OCIS_"))}
    env.update(DJANGO_SETTINGS_MODULE="ssesite.settings", **environment)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def open_stream(service, user_id, path="/sse"):
    response = await request(service.http_port, path, [("x-access-token", token_for(user_id))])
    assert response.status == 200
    assert await response.read_block() == OPENING
    return response


async def test_keepalive_once_per_connection_per_interval(nats_url, user_id):
    service = ServiceProcess(nats_url, SSE_KEEPALIVE_INTERVAL="500ms").start()
    try:
        tabs = [await open_stream(service, user_id) for _ in range(2)]

        # In 2.2 s, a 500 ms timer fires 4 times. oCIS would send 8 per tab
        # here, because every tab's timer writes to every tab of the user.
        async def collect(tab, deadline):
            blocks = []
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    blocks.append(await tab.read_block(timeout=remaining))
                except asyncio.TimeoutError:
                    break
            return blocks

        deadline = time.monotonic() + 2.2
        received = await asyncio.gather(*(collect(tab, deadline) for tab in tabs))

        for blocks in received:
            assert set(blocks) == {KEEPALIVE}
            assert 3 <= len(blocks) <= 5
        for tab in tabs:
            await tab.close()
    finally:
        assert service.stop() == 0


async def test_keepalive_off_by_default(service, user_id):
    stream = await open_stream(service, user_id)

    try:
        block = await stream.read_block(timeout=1.5)
    except asyncio.TimeoutError:
        block = None

    assert block is None
    await stream.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_ends_open_streams(nats_url, jetstream, user_id, stop_signal):
    before = {consumer.name for consumer in await jetstream.consumers_info("main-queue")}
    service = ServiceProcess(nats_url).start()
    started = {consumer.name for consumer in await jetstream.consumers_info("main-queue")}
    streams = [await open_stream(service, user_id) for _ in range(3)]

    stopped_at = time.monotonic()
    assert service.stop(timeout=10, stop_signal=stop_signal) == 0
    assert time.monotonic() - stopped_at < 5

    for stream in streams:
        retry = await stream.read_block(timeout=1)
        assert re.fullmatch(rb"retry: (\d+)\n\n", retry)
        assert 1000 <= int(retry[7:-2]) <= 10000
        assert await stream.read_to_end(timeout=1) == b""
        assert stream.finished
        await stream.close()
    assert len(started - before) == 1
    after = {consumer.name for consumer in await jetstream.consumers_info("main-queue")}
    assert after == before
    assert "Stopped sse" in service.output()
    assert "Ending 3 streams" in service.output()
    assert "took too long to shut down" not in service.output()


async def test_connect_close_cycles_return_gauge(service, user_id):
    # Streams closed by earlier tests may still be winding down.
    assert await wait_for_metric(service, "sse_connections_active", 0) == 0
    opened_before = service.metric("sse_connections_total")

    async def cycles(count):
        for _ in range(count):
            stream = await open_stream(service, user_id)
            await stream.close()

    await asyncio.gather(*(cycles(100) for _ in range(10)))

    assert await wait_for_metric(service, "sse_connections_active", 0) == 0
    assert service.metric("sse_connections_total") == opened_before + 1000


async def test_stream_still_delivers_after_cycles(service, jetstream, user_id):
    for _ in range(20):
        stream = await open_stream(service, user_id)
        await stream.close()
    stream = await open_stream(service, user_id)

    acknowledgement = await jetstream.publish("main-queue", encode_envelope([user_id], "after", "cycles"))

    assert await stream.read_event() == b"id: %d\nevent: after\ndata: cycles\n\n" % acknowledgement.seq
    await stream.close()


def test_readyz_reports_nats_down():
    unused = free_port()
    service = ServiceProcess(f"nats://127.0.0.1:{unused}")
    try:
        service.start(ready_timeout=0.0)
    except AssertionError:
        pass
    service.wait_until(lambda: service.get("/healthz")[0] == 200, 10, "healthy")

    assert service.get("/healthz") == (200, b"OK\n")
    assert service.get("/readyz") == (503, b"nats: not ready\n")
    assert service.stop() == 0


def test_http_root_prefixes_stream_paths(nats_url):
    service = ServiceProcess(nats_url, SSE_HTTP_ROOT="/base/").start()

    async def check():
        for path, status in [
            ("/base/sse", 200),
            ("/base/ocs/v2.php/apps/notifications/api/v1/notifications/sse", 200),
            ("/sse", 404),
        ]:
            response = await request(service.http_port, path, [("x-access-token", token_for("root-user"))])
            assert (path, response.status) == (path, status)
            await response.close()

    try:
        asyncio.run(check())
    finally:
        assert service.stop() == 0


def test_missing_jwt_secret_stops_startup(nats_url):
    result = run_command("runsse", SSE_EVENTS_ENDPOINT=nats_url)

    assert result.returncode == 1
    assert "SSE_JWT_SECRET (or OCIS_JWT_SECRET) is not set" in result.stderr


def test_invalid_keepalive_stops_startup(nats_url):
    result = run_command("runsse", SSE_EVENTS_ENDPOINT=nats_url, SSE_JWT_SECRET="secret", SSE_KEEPALIVE_INTERVAL="30")

    assert result.returncode == 1
    assert "SSE_KEEPALIVE_INTERVAL='30' is invalid: expected a Go duration such as 30s" in result.stderr


def test_port_in_use_stops_startup(nats_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_command(
            "runsse",
            SSE_EVENTS_ENDPOINT=nats_url,
            SSE_JWT_SECRET="secret",
            SSE_HTTP_ADDR=f"127.0.0.1:{port}",
            SSE_DEBUG_ADDR=f"127.0.0.1:{free_port()}",
        )

    assert result.returncode == 1
    assert f"could not listen on 127.0.0.1:{port}; see the log above" in result.stderr


def test_embedded_nats_first_run(user_id):
    nats_port = free_port()
    endpoint = f"127.0.0.1:{nats_port}"
    service = ServiceProcess(endpoint, args=["--embedded-nats"]).start()

    async def stream_one_event():
        stream = await open_stream(service, user_id)
        published = await asyncio.to_thread(
            run_command, "ssepublish", "--type", "hello", "--message", "from ssepublish", user_id, SSE_EVENTS_ENDPOINT=endpoint
        )
        assert published.returncode == 0, published.stderr
        assert published.stdout.startswith("Published to main-queue as stream sequence ")
        sequence = int(published.stdout.strip().rstrip(".").rsplit(" ", 1)[1])
        assert await stream.read_event() == b"id: %d\nevent: hello\ndata: from ssepublish\n\n" % sequence
        await stream.close()

    try:
        asyncio.run(stream_one_event())
    finally:
        assert service.stop() == 0

    # The embedded server went away with the service.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", nats_port)) != 0


def test_ssetoken_prints_valid_token():
    result = run_command("ssetoken", "alice", "--ttl", "10m", SSE_JWT_SECRET="printed-token-secret-" + "0123456789abcdef" * 4)

    from sse.authentication import authenticate_reva_token

    assert result.returncode == 0
    assert authenticate_reva_token(result.stdout.strip(), "printed-token-secret-" + "0123456789abcdef" * 4) == "alice"


def test_ssepublish_reports_unreachable_nats():
    result = run_command("ssepublish", "--type", "t", "--message", "m", "alice", SSE_EVENTS_ENDPOINT=f"127.0.0.1:{free_port()}")

    assert result.returncode == 1
    assert "Publishing to NATS at nats://127.0.0.1:" in result.stderr


def test_embedded_nats_refuses_taken_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_command(
            "runsse",
            "--embedded-nats",
            SSE_EVENTS_ENDPOINT=f"127.0.0.1:{port}",
            SSE_JWT_SECRET="secret",
            SSE_HTTP_ADDR=f"127.0.0.1:{free_port()}",
            SSE_DEBUG_ADDR=f"127.0.0.1:{free_port()}",
        )

    assert result.returncode == 1
    assert f"127.0.0.1:{port} is already in use, so the embedded NATS server cannot start" in result.stderr
