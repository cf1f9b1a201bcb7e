"""
Unit tests of the request id that the stream consumer logs and echoes.
"""

import uuid

import pytest
from channels.testing import ApplicationCommunicator

from sse.consumers import EventStreamConsumer


async def response_headers(request_id):
    headers = [(b"x-request-id", request_id)] if request_id is not None else []
    scope = {"type": "http", "method": "GET", "path": "/sse", "headers": headers}
    communicator = ApplicationCommunicator(EventStreamConsumer.as_asgi(), scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(1)
    await communicator.wait(1)
    return dict(start["headers"])


@pytest.fixture(autouse=True)
def jwt_secret(settings):
    settings.SSE = {"JWT_SECRET": "request-id-test-secret"}


@pytest.mark.parametrize(
    "sent, echoed",
    [
        (b"abc-123", b"abc-123"),
        (b"  padded  ", b"padded"),
        (b"tab\there\x7fdel", b"tabheredel"),
        (b"x" * 200, b"x" * 128),
        ("caf\u00e9".encode("latin-1"), "caf\u00e9".encode("latin-1")),
    ],
)
async def test_request_id_sanitised(sent, echoed):
    headers = await response_headers(sent)

    assert headers[b"x-request-id"] == echoed


@pytest.mark.parametrize("sent", [None, b"", b"   ", b"\x01\x02"])
async def test_request_id_generated(sent):
    headers = await response_headers(sent)

    assert uuid.UUID(headers[b"x-request-id"].decode()).version == 4
