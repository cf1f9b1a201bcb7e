"""
Unit tests of the CORS rules in ``sse.cors``. The same behaviour is tested
over sockets in ``test_cors_e2e``.
"""

import pytest

from sse.cors import CORSPolicy, get_policy, is_preflight, preflight_headers, response_headers
from sse.parsing import parse_origins

VARY_PREFLIGHT = (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers")


def scope(method="GET", headers=()):
    return {"type": "http", "method": method, "path": "/sse", "headers": [(k.encode(), v.encode()) for k, v in headers]}


@pytest.mark.parametrize(
    "allowed, origin, expected",
    [
        (("*",), "https://any.example.org", True),
        (("*",), "null", True),
        (("https://web.example.com",), "https://web.example.com", True),
        (("https://web.example.com",), "HTTPS://WEB.EXAMPLE.COM", True),
        (("HTTPS://Web.Example.com",), "https://web.example.com", True),
        (("https://web.example.com",), "https://web.example.com:8443", False),
        (("https://web.example.com",), "http://web.example.com", False),
        (("https://web.example.com",), "https://web.example.com.evil.org", False),
        (("https://*.example.com",), "https://a.example.com", True),
        (("https://*.example.com",), "https://a.b.example.com", True),
        (("https://*.example.com",), "https://.example.com", False),
        (("https://*.example.com",), "https://example.com", False),
        (("https://*.example.com",), "http://a.example.com", False),
        (("https://*.example.com",), "https://a.example.com.evil.org", False),
        (("http://localhost:*",), "http://localhost:9200", True),
        (("http://localhost:*",), "http://localhost", False),
        ((), "https://web.example.com", False),
    ],
)
def test_policy_allows_origin(allowed, origin, expected):
    assert CORSPolicy(allow_origins=allowed).allows_origin(origin) is expected


@pytest.mark.parametrize(
    "allowed, method, expected",
    [
        (("GET",), "GET", True),
        (("get",), "GET", True),
        (("GET",), "OPTIONS", True),
        (("GET",), "POST", False),
        (("GET",), "HEAD", False),
        (("*",), "PATCH", True),
    ],
)
def test_policy_allows_method(allowed, method, expected):
    assert CORSPolicy(allow_methods=allowed).allows_method(method) is expected


@pytest.mark.parametrize(
    "allowed, names, expected",
    [
        (("X-Access-Token", "Last-Event-ID"), ["x-access-token", "last-event-id"], True),
        (("X-Access-Token",), [], True),
        (("X-Access-Token",), ["x-access-token", "x-other"], False),
        ((), ["x-access-token"], False),
        (("*",), ["x-anything"], True),
    ],
)
def test_policy_allows_headers(allowed, names, expected):
    assert CORSPolicy(allow_headers=allowed).allows_headers(names) is expected


def test_preflight_headers_with_credentials():
    policy = CORSPolicy(allow_origins=("*",), allow_headers=("X-Access-Token",), allow_credentials=True)

    assert policy.preflight_headers("https://web.example.com", "GET", " X-Access-Token ") == [
        VARY_PREFLIGHT,
        (b"access-control-allow-origin", b"https://web.example.com"),
        (b"access-control-allow-methods", b"GET"),
        (b"access-control-allow-headers", b"X-Access-Token"),
        (b"access-control-allow-credentials", b"true"),
    ]


def test_preflight_headers_wildcard_without_credentials():
    policy = CORSPolicy(allow_origins=("*",), allow_credentials=False)

    assert policy.preflight_headers("https://web.example.com", "GET", None) == [
        VARY_PREFLIGHT,
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-methods", b"GET"),
    ]


def test_preflight_headers_listed_origin_without_credentials():
    policy = CORSPolicy(allow_origins=("https://web.example.com",), allow_credentials=False)

    assert policy.preflight_headers("https://web.example.com", "GET", "") == [
        VARY_PREFLIGHT,
        (b"access-control-allow-origin", b"https://web.example.com"),
        (b"access-control-allow-methods", b"GET"),
    ]


@pytest.mark.parametrize(
    "origin, method, request_headers",
    [
        ("https://evil.example.com", "GET", None),
        ("https://web.example.com", "PUT", None),
        ("https://web.example.com", "GET", "x-access-token,x-custom"),
    ],
)
def test_preflight_headers_rejected(origin, method, request_headers):
    policy = CORSPolicy(allow_origins=("https://web.example.com",), allow_headers=("x-access-token",))

    assert policy.preflight_headers(origin, method, request_headers) == [VARY_PREFLIGHT]


def test_response_headers():
    policy = CORSPolicy(allow_origins=("https://web.example.com",), allow_credentials=True)

    assert policy.response_headers("https://web.example.com") == [
        (b"vary", b"Origin"),
        (b"access-control-allow-origin", b"https://web.example.com"),
        (b"access-control-allow-credentials", b"true"),
    ]
    assert policy.response_headers("https://evil.example.com") == [(b"vary", b"Origin")]
    assert policy.response_headers(None) == [(b"vary", b"Origin")]


def test_response_headers_wildcard_without_credentials():
    policy = CORSPolicy(allow_origins=("*",), allow_credentials=False)

    assert policy.response_headers("https://web.example.com") == [
        (b"vary", b"Origin"),
        (b"access-control-allow-origin", b"*"),
    ]


@pytest.mark.parametrize(
    "method, headers, expected",
    [
        ("OPTIONS", [("origin", "https://a.example"), ("access-control-request-method", "GET")], True),
        ("OPTIONS", [("origin", "https://a.example")], False),
        ("OPTIONS", [("access-control-request-method", "GET")], False),
        ("GET", [("origin", "https://a.example"), ("access-control-request-method", "GET")], False),
    ],
)
def test_is_preflight(method, headers, expected):
    assert is_preflight(scope(method, headers)) is expected


def test_request_headers_joined_over_lines(settings):
    settings.SSE = {"CORS_ALLOW_ORIGINS": "https://web.example.com", "CORS_ALLOW_HEADERS": "a,b"}
    request = scope(
        "OPTIONS",
        [
            ("origin", "https://web.example.com"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "a"),
            ("access-control-request-headers", "b"),
        ],
    )

    assert (b"access-control-allow-headers", b"a,b") in preflight_headers(request)


def test_policy_follows_settings(settings):
    settings.SSE = {"CORS_ALLOW_ORIGINS": "https://one.example.com", "CORS_ALLOW_CREDENTIALS": "false"}
    first = get_policy()
    settings.SSE = {"CORS_ALLOW_ORIGINS": "https://two.example.com", "CORS_ALLOW_CREDENTIALS": "false"}

    assert first.allows_origin("https://one.example.com")
    assert response_headers(scope(headers=[("origin", "https://two.example.com")])) == [
        (b"vary", b"Origin"),
        (b"access-control-allow-origin", b"https://two.example.com"),
    ]


def test_parse_origins():
    assert parse_origins(" https://a.example , https://*.b.example,*") == ("https://a.example", "https://*.b.example", "*")


def test_parse_origins_rejects_two_wildcards():
    with pytest.raises(ValueError, match=r"the origin 'https://\*\.\*\.example' has more than one \*"):
        parse_origins("https://a.example,https://*.*.example")
