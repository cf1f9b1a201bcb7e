"""
End-to-end CORS behaviour of the stream endpoints: preflight requests and
actual responses of ``runsse`` processes with different CORS settings,
seen over a raw socket.
"""

import json

import pytest

from .conftest import token_for
from .http import request
from .service import ServiceProcess
from .test_service_e2e import run_command

OCS_PATH = "/ocs/v2.php/apps/notifications/api/v1/notifications/sse"
OPENING = b": stream opened\n\n"
WEB = "https://web.example.com"
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def cors_headers(response):
    """Return the Access-Control-* headers of ``response`` as a dict."""
    return {name: value for name, value in response.headers if name.startswith("access-control-")}


async def preflight(service, origin, method="GET", request_headers="x-access-token", path="/sse"):
    headers = [("Origin", origin), ("Access-Control-Request-Method", method)]
    if request_headers is not None:
        headers.append(("Access-Control-Request-Headers", request_headers))
    response = await request(service.http_port, path, headers, method="OPTIONS")
    await response.close()
    return response


async def open_stream(service, user_id, origin=None):
    headers = [("x-access-token", token_for(user_id))]
    if origin is not None:
        headers.append(("Origin", origin))
    response = await request(service.http_port, "/sse", headers)
    assert response.status == 200
    assert await response.read_block() == OPENING
    await response.close()
    return response


@pytest.fixture(scope="module")
def listed_origins(nats_url):
    """A service that allows one origin and every subdomain of apps.example.com, with credentials."""
    process = ServiceProcess(nats_url, SSE_CORS_ALLOW_ORIGINS=f"{WEB}, https://*.apps.example.com").start()
    yield process
    assert process.stop() == 0, process.output()


@pytest.mark.parametrize("path", ["/sse", OCS_PATH])
async def test_preflight_allowed(listed_origins, path):
    response = await preflight(listed_origins, WEB, request_headers="last-event-id,x-access-token", path=path)

    assert response.status == 204
    assert cors_headers(response) == {
        "access-control-allow-origin": WEB,
        "access-control-allow-methods": "GET",
        "access-control-allow-headers": "last-event-id,x-access-token",
        "access-control-allow-credentials": "true",
    }
    assert response.header("vary") == PREFLIGHT_VARY
    assert response.header("content-length") is None
    assert response.header("transfer-encoding") is None


async def test_preflight_without_request_headers(listed_origins):
    response = await preflight(listed_origins, WEB, request_headers=None)

    assert response.status == 204
    assert cors_headers(response) == {
        "access-control-allow-origin": WEB,
        "access-control-allow-methods": "GET",
        "access-control-allow-credentials": "true",
    }


async def test_preflight_matches_case_insensitively(listed_origins):
    response = await preflight(listed_origins, "HTTPS://Web.Example.COM", request_headers="X-Access-Token, Authorization")

    assert response.status == 204
    assert response.header("access-control-allow-origin") == "HTTPS://Web.Example.COM"
    assert response.header("access-control-allow-headers") == "X-Access-Token, Authorization"


@pytest.mark.parametrize(
    "origin, method, request_headers",
    [
        ("https://evil.example.com", "GET", "x-access-token"),
        ("http://web.example.com", "GET", "x-access-token"),
        (WEB, "POST", "x-access-token"),
        (WEB, "DELETE", None),
        (WEB, "GET", "x-access-token,x-custom"),
        (WEB, "GET", "cookie"),
    ],
    ids=["origin", "scheme", "method", "method-without-headers", "header", "forbidden-header"],
)
async def test_preflight_rejected(listed_origins, origin, method, request_headers):
    response = await preflight(listed_origins, origin, method, request_headers)

    assert response.status == 204
    assert cors_headers(response) == {}
    assert response.header("vary") == PREFLIGHT_VARY


async def test_preflight_options_method_always_allowed(listed_origins):
    response = await preflight(listed_origins, WEB, method="OPTIONS", request_headers=None)

    assert response.status == 204
    assert response.header("access-control-allow-methods") == "OPTIONS"


@pytest.mark.parametrize(
    "headers",
    [[], [("Origin", WEB)], [("Access-Control-Request-Method", "GET")]],
    ids=["no-cors-headers", "origin-only", "request-method-only"],
)
async def test_plain_options_not_allowed(listed_origins, headers):
    response = await request(listed_origins.http_port, "/sse", headers, method="OPTIONS")

    assert response.status == 405
    assert response.header("allow") == "GET, HEAD"
    assert cors_headers(response) == {}
    await response.close()


async def test_stream_allowed_origin(listed_origins, user_id):
    response = await open_stream(listed_origins, user_id, origin=WEB)

    assert cors_headers(response) == {
        "access-control-allow-origin": WEB,
        "access-control-allow-credentials": "true",
    }
    assert response.header("vary") == "Origin"
    assert response.header("content-type") == "text/event-stream; charset=utf-8"


async def test_stream_disallowed_origin(listed_origins, user_id):
    response = await open_stream(listed_origins, user_id, origin="https://evil.example.com")

    assert cors_headers(response) == {}
    assert response.header("vary") == "Origin"


async def test_stream_without_origin(listed_origins, user_id):
    response = await open_stream(listed_origins, user_id)

    assert cors_headers(response) == {}
    assert response.header("vary") == "Origin"


async def test_head_allowed_origin(listed_origins, user_id):
    response = await request(
        listed_origins.http_port, "/sse", [("x-access-token", token_for(user_id)), ("Origin", WEB)], method="HEAD"
    )
    await response.close()

    assert response.status == 200
    assert response.header("access-control-allow-origin") == WEB
    assert response.header("vary") == "Origin"


async def test_unauthorized_allowed_origin(listed_origins):
    response = await request(listed_origins.http_port, "/sse", [("Origin", WEB)])
    body = await response.read_to_end()
    await response.close()

    assert response.status == 401
    assert cors_headers(response) == {
        "access-control-allow-origin": WEB,
        "access-control-allow-credentials": "true",
    }
    assert response.header("vary") == "Origin"
    assert response.header("www-authenticate") == "Bearer"
    assert json.loads(body)["code"] == "not_authenticated"


async def test_unauthorized_disallowed_origin(listed_origins):
    response = await request(listed_origins.http_port, "/sse", [("Origin", "https://evil.example.com")])
    await response.read_to_end()
    await response.close()

    assert response.status == 401
    assert cors_headers(response) == {}
    assert response.header("vary") == "Origin"


@pytest.mark.parametrize("origin", ["https://a.apps.example.com", "https://deep.er.apps.example.com"])
async def test_wildcard_subdomain_allowed(listed_origins, user_id, origin):
    allowed = await preflight(listed_origins, origin)
    stream = await open_stream(listed_origins, user_id, origin=origin)

    assert allowed.header("access-control-allow-origin") == origin
    assert stream.header("access-control-allow-origin") == origin
    assert stream.header("access-control-allow-credentials") == "true"


@pytest.mark.parametrize(
    "origin",
    ["https://apps.example.com", "https://.apps.example.com", "http://a.apps.example.com", "https://a.apps.example.com.evil.org"],
)
async def test_wildcard_subdomain_rejects(listed_origins, user_id, origin):
    rejected = await preflight(listed_origins, origin)
    stream = await open_stream(listed_origins, user_id, origin=origin)

    assert cors_headers(rejected) == {}
    assert cors_headers(stream) == {}


async def test_default_allows_any_origin_with_credentials(service, user_id):
    allowed = await preflight(service, "https://anywhere.example.org", request_headers="authorization,last-event-id,x-access-token")
    stream = await open_stream(service, user_id, origin="https://anywhere.example.org")

    # With credentials on, the origin is echoed because browsers reject * on a credentialed request.
    assert cors_headers(allowed) == {
        "access-control-allow-origin": "https://anywhere.example.org",
        "access-control-allow-methods": "GET",
        "access-control-allow-headers": "authorization,last-event-id,x-access-token",
        "access-control-allow-credentials": "true",
    }
    assert cors_headers(stream) == {
        "access-control-allow-origin": "https://anywhere.example.org",
        "access-control-allow-credentials": "true",
    }


async def test_wildcard_without_credentials(nats_url, user_id):
    process = ServiceProcess(nats_url, SSE_CORS_ALLOW_CREDENTIALS="false").start()
    try:
        allowed = await preflight(process, WEB)
        stream = await open_stream(process, user_id, origin=WEB)
    finally:
        assert process.stop() == 0, process.output()

    assert cors_headers(allowed) == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "GET",
        "access-control-allow-headers": "x-access-token",
    }
    assert cors_headers(stream) == {"access-control-allow-origin": "*"}
    assert stream.header("vary") == "Origin"


async def test_ocis_fallback_variables(nats_url, user_id):
    process = ServiceProcess(
        nats_url,
        OCIS_CORS_ALLOW_ORIGINS="https://ocis.example.com",
        OCIS_CORS_ALLOW_METHODS="GET,HEAD",
        OCIS_CORS_ALLOW_HEADERS="X-Access-Token",
        OCIS_CORS_ALLOW_CREDENTIALS="false",
    ).start()
    try:
        head = await preflight(process, "https://ocis.example.com", method="HEAD")
        extra_header = await preflight(process, "https://ocis.example.com", request_headers="x-access-token,last-event-id")
        other_origin = await preflight(process, WEB)
        stream = await open_stream(process, user_id, origin="https://ocis.example.com")
    finally:
        assert process.stop() == 0, process.output()

    assert cors_headers(head) == {
        "access-control-allow-origin": "https://ocis.example.com",
        "access-control-allow-methods": "HEAD",
        "access-control-allow-headers": "x-access-token",
    }
    assert cors_headers(extra_header) == {}
    assert cors_headers(other_origin) == {}
    assert cors_headers(stream) == {"access-control-allow-origin": "https://ocis.example.com"}


async def test_sse_variables_win_over_ocis(nats_url, user_id):
    process = ServiceProcess(
        nats_url,
        OCIS_CORS_ALLOW_ORIGINS="https://ocis.example.com",
        SSE_CORS_ALLOW_ORIGINS="https://sse.example.com",
        OCIS_CORS_ALLOW_CREDENTIALS="false",
        SSE_CORS_ALLOW_CREDENTIALS="true",
        OCIS_CORS_ALLOW_HEADERS="x-access-token",
        SSE_CORS_ALLOW_HEADERS="authorization",
    ).start()
    try:
        sse_origin = await preflight(process, "https://sse.example.com", request_headers="authorization")
        ocis_origin = await preflight(process, "https://ocis.example.com", request_headers="authorization")
        ocis_header = await preflight(process, "https://sse.example.com", request_headers="x-access-token")
        stream = await open_stream(process, user_id, origin="https://ocis.example.com")
    finally:
        assert process.stop() == 0, process.output()

    assert cors_headers(sse_origin) == {
        "access-control-allow-origin": "https://sse.example.com",
        "access-control-allow-methods": "GET",
        "access-control-allow-headers": "authorization",
        "access-control-allow-credentials": "true",
    }
    assert cors_headers(ocis_origin) == {}
    assert cors_headers(ocis_header) == {}
    assert cors_headers(stream) == {}


def test_origin_with_two_wildcards_stops_startup(nats_url):
    result = run_command(
        "runsse", SSE_EVENTS_ENDPOINT=nats_url, SSE_JWT_SECRET="secret", SSE_CORS_ALLOW_ORIGINS="https://*.*.example.com"
    )

    assert result.returncode == 1
    assert "SSE_CORS_ALLOW_ORIGINS='https://*.*.example.com' is invalid" in result.stderr
    assert "the origin 'https://*.*.example.com' has more than one *" in result.stderr
