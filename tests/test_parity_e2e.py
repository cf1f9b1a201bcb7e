"""
End-to-end checks of details that oCIS operators rely on: the version and
request id headers, ``manage.py ssehealth`` and ``runsse --version``.
"""

import http.server
import socket
import threading
import uuid

import pytest

import sse

from .conftest import token_for
from .http import request
from .service import free_port
from .test_service_e2e import run_command


async def test_stream_has_version_header(service, user_id):
    response = await request(service.http_port, "/sse", [("x-access-token", token_for(user_id))])

    assert response.status == 200
    assert response.header("x-sse-version") == sse.__version__
    await response.close()


async def test_client_request_id_echoed(service, user_id):
    response = await request(
        service.http_port, "/sse", [("x-access-token", token_for(user_id)), ("X-Request-ID", "web-7f3a9c2e-reconnect")]
    )

    assert response.status == 200
    assert response.header("x-request-id") == "web-7f3a9c2e-reconnect"
    await response.close()


async def test_missing_request_id_generated(service, user_id):
    ids = []
    for _ in range(2):
        response = await request(service.http_port, "/sse", [("x-access-token", token_for(user_id))])
        ids.append(response.header("x-request-id"))
        await response.close()

    assert [uuid.UUID(value).version for value in ids] == [4, 4]
    assert ids[0] != ids[1]


@pytest.mark.parametrize("method, status", [("GET", 401), ("POST", 405), ("HEAD", 401)])
async def test_rejections_have_both_headers(service, method, status):
    response = await request(service.http_port, "/sse", [("X-Request-ID", "rejected-1")], method=method)

    assert response.status == status
    assert response.header("x-sse-version") == sse.__version__
    assert response.header("x-request-id") == "rejected-1"
    await response.close()


def test_ssehealth_passes_for_running_service(service):
    result = run_command("ssehealth", SSE_DEBUG_ADDR=f"127.0.0.1:{service.debug_port}")

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"OK: http://127.0.0.1:{service.debug_port}/healthz returned 200\n"


def test_ssehealth_uses_loopback_for_all_interfaces(service):
    result = run_command("ssehealth", SSE_DEBUG_ADDR=f"0.0.0.0:{service.debug_port}")

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"OK: http://127.0.0.1:{service.debug_port}/healthz returned 200\n"


def test_ssehealth_fails_when_nothing_listens():
    port = free_port()

    result = run_command("ssehealth", SSE_DEBUG_ADDR=f"127.0.0.1:{port}")

    assert result.returncode == 1
    assert result.stderr == (
        f"CommandError: The health check failed: the connection to http://127.0.0.1:{port}/healthz was refused. "
        f"Is runsse running with SSE_DEBUG_ADDR=127.0.0.1:{port}?\n"
    )


def test_ssehealth_reports_unhealthy_status():
    class Unhealthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"http: not ready\n"
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Unhealthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        result = run_command("ssehealth", SSE_DEBUG_ADDR=f"127.0.0.1:{port}")
    finally:
        server.shutdown()
        server.server_close()

    assert result.returncode == 1
    assert result.stderr == (
        f"CommandError: The health check failed: http://127.0.0.1:{port}/healthz returned 503 (http: not ready).\n"
    )


def test_ssehealth_times_out():
    # The kernel completes connections to a listening socket that never
    # accepts them, so the request gets no response.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]

        result = run_command("ssehealth", "--timeout", "0.5", SSE_DEBUG_ADDR=f"127.0.0.1:{port}")

    assert result.returncode == 1
    assert result.stderr == (
        f"CommandError: The health check failed: http://127.0.0.1:{port}/healthz timed out after 0.5s.\n"
    )


def test_ssehealth_rejects_zero_timeout():
    result = run_command("ssehealth", "--timeout", "0")

    assert result.returncode == 1
    assert "--timeout=0.0 is invalid: it must be more than 0 seconds" in result.stderr


def test_runsse_version_is_app_version():
    result = run_command("runsse", "--version")

    assert result.returncode == 0
    assert result.stdout == f"{sse.__version__}\n"
