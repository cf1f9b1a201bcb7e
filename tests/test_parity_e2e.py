"""
End-to-end checks of details that oCIS operators rely on: the version and
request id headers.
"""

import uuid

import pytest

import sse

from .conftest import token_for
from .http import request


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
