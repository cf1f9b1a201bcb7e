"""
A half-open connection: the client's network stops responding without
closing the connection. The client runs in a network namespace that the
test creates, joined to this host by a veth pair. Taking the namespace's
end of the pair down makes the connection half-open, since the client's
socket stays open but no packet reaches it any more.
"""

import os
import subprocess
import sys
import time
import uuid

import pytest

from .conftest import token_for
from .service import ServiceProcess, free_port

CLIENT = """
import socket, sys, time
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
sock.sendall(("GET /sse HTTP/1.1\\r\\nHost: x\\r\\nx-access-token: " + sys.argv[3] + "\\r\\n\\r\\n").encode())
sock.recv(4096)
print("open", flush=True)
time.sleep(120)
"""


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def namespace():
    """A network namespace with 10.231.x.2, reachable from this host's 10.231.x.1."""
    assert os.geteuid() == 0, "creating network namespaces needs root"
    suffix = uuid.uuid4().hex[:6]
    name, host_end, namespace_end = f"sse-{suffix}", f"sseh{suffix}", f"ssen{suffix}"
    subnet = int(suffix[:2], 16)
    host_address, client_address = f"10.231.{subnet}.1", f"10.231.{subnet}.2"

    ip("netns", "add", name)
    try:
        ip("link", "add", host_end, "type", "veth", "peer", "name", namespace_end)
        ip("link", "set", namespace_end, "netns", name)
        ip("addr", "add", f"{host_address}/30", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("netns", "exec", name, "ip", "addr", "add", f"{client_address}/30", "dev", namespace_end)
        ip("netns", "exec", name, "ip", "link", "set", namespace_end, "up")
        yield {"name": name, "host_end": host_end, "namespace_end": namespace_end, "host_address": host_address}
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def wait_for(condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_half_open_stream_dropped(nats_url, namespace, user_id):
    port = free_port()
    service = ServiceProcess(
        nats_url,
        SSE_HTTP_ADDR=f"{namespace['host_address']}:{port}",
        SSE_KEEPALIVE_INTERVAL="1s",
    ).start()
    client = subprocess.Popen(
        ["ip", "netns", "exec", namespace["name"], sys.executable, "-c", CLIENT,
         namespace["host_address"], str(port), token_for(user_id)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout.readline().strip() == "open"
        assert wait_for(lambda: service.metric("sse_connections_active") == 1, 5)

        # From now on nothing reaches the client and nothing comes back,
        # but the client never closes its socket.
        ip("netns", "exec", namespace["name"], "ip", "link", "set", namespace["namespace_end"], "down")
        dropped_after = time.monotonic()

        # Keep-alives every second stay unacknowledged; the kernel gives up
        # after three intervals (TCP_USER_TIMEOUT) and daphne ends the stream.
        assert wait_for(lambda: service.metric("sse_connections_active") == 0, 15)
        assert time.monotonic() - dropped_after < 10
    finally:
        client.kill()
        client.wait()
        assert service.stop() == 0, service.output()
