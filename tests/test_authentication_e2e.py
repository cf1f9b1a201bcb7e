"""
End-to-end authentication: every rejected request is a 401 with a JSON
body and a WWW-Authenticate challenge, over a real socket.
"""

import base64
import json
import time

import jwt
import pytest
from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken

from sse.tokens import mint_reva_token
from sse.wire import encode_envelope

from .http import request
from .service import JWT_SECRET, ServiceProcess

INVALID = 'Bearer error="invalid_token"'


@pytest.fixture(scope="module")
def service(nats_url):
    # The same Django SECRET_KEY as the test process, so that simplejwt
    # tokens minted here validate in the service.
    process = ServiceProcess(nats_url, DJANGO_SECRET_KEY=settings.SECRET_KEY).start()
    yield process
    assert process.stop() == 0, process.output()


def reva_claims(user_id="alice", **overrides):
    now = int(time.time())
    resource = base64.b64encode(b'{"path":"/"}').decode()
    claims = {
        "aud": "reva",
        "iss": "https://idp.example",
        "iat": now,
        "exp": now + 600,
        "user": {"id": {"idp": "https://idp.example", "opaque_id": user_id, "type": 1}, "username": user_id},
        "scope": {"user": {"resource": {"decoder": "json", "value": resource}, "role": 1}},
    }
    claims.update(overrides)
    return claims


def unsigned_token(claims):
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    return (header + b"." + body + b".").decode()


async def assert_rejected(service, headers, code, challenge):
    response = await request(service.http_port, "/sse", headers)
    body = await response.read_to_end()

    assert response.status == 401
    assert response.header("www-authenticate") == challenge
    assert response.header("content-type") == "application/json"
    assert json.loads(body)["code"] == code
    assert response.header("content-length") == str(len(body))
    await response.close()


async def test_missing_token(service):
    response = await request(service.http_port, "/sse")
    body = await response.read_to_end()

    assert response.status == 401
    assert response.header("www-authenticate") == "Bearer"
    assert body == b'{"code": "not_authenticated", "detail": "Authentication credentials were not provided."}'
    await response.close()


@pytest.mark.parametrize(
    "token, code",
    [
        ("not a jwt", "token_invalid"),
        (jwt.encode(reva_claims(), "another-secret-" + "0123456789abcdef" * 4, algorithm="HS256"), "token_invalid"),
        (jwt.encode(reva_claims(), JWT_SECRET, algorithm="HS512"), "token_invalid"),
        (jwt.encode(reva_claims(), JWT_SECRET, algorithm="HS384"), "token_invalid"),
        (unsigned_token(reva_claims()), "token_invalid"),
        (jwt.encode(reva_claims(exp=int(time.time()) - 30), JWT_SECRET, algorithm="HS256"), "token_expired"),
        (jwt.encode(reva_claims(nbf=int(time.time()) + 3600), JWT_SECRET, algorithm="HS256"), "token_invalid"),
        (jwt.encode(reva_claims(scope={"publicshare": {"role": 1}}), JWT_SECRET, algorithm="HS256"), "token_scope_invalid"),
        (jwt.encode(reva_claims(scope={}), JWT_SECRET, algorithm="HS256"), "token_scope_invalid"),
        (jwt.encode(reva_claims(user_id=""), JWT_SECRET, algorithm="HS256"), "token_user_missing"),
        (jwt.encode({k: v for k, v in reva_claims().items() if k != "user"}, JWT_SECRET, algorithm="HS256"), "token_user_missing"),
    ],
    ids=[
        "garbage",
        "wrong-secret",
        "hs512",
        "hs384",
        "alg-none",
        "expired",
        "not-yet-valid",
        "public-share-scope",
        "empty-scope",
        "empty-opaque-id",
        "no-user",
    ],
)
async def test_invalid_reva_token(service, token, code):
    await assert_rejected(service, [("x-access-token", token)], code, INVALID)


async def test_reva_token_within_leeway_accepted(service):
    token = jwt.encode(reva_claims(exp=int(time.time()) - 2), JWT_SECRET, algorithm="HS256")

    response = await request(service.http_port, "/sse", [("x-access-token", token)])

    assert response.status == 200
    await response.close()


async def test_reva_token_with_audience_list_accepted(service):
    token = jwt.encode(reva_claims(aud=["reva"]), JWT_SECRET, algorithm="HS256")

    response = await request(service.http_port, "/sse", [("x-access-token", token)])

    assert response.status == 200
    await response.close()


async def test_x_access_token_wins_over_bearer(service):
    bearer = str(AccessToken.for_user(type("User", (), {"id": 7, "pk": 7})()))

    await assert_rejected(
        service,
        [("x-access-token", "not a jwt"), ("authorization", f"Bearer {bearer}")],
        "token_invalid",
        INVALID,
    )


async def test_simplejwt_bearer_delivers(service, jetstream):
    user = type("User", (), {"id": 4242, "pk": 4242})()
    token = str(AccessToken.for_user(user))
    response = await request(service.http_port, "/sse", [("authorization", f"Bearer {token}")])
    assert response.status == 200
    assert await response.read_block() == b": stream opened\n\n"

    acknowledgement = await jetstream.publish("main-queue", encode_envelope(["4242"], "hello", "simplejwt"))

    assert await response.read_event() == b"id: %d\nevent: hello\ndata: simplejwt\n\n" % acknowledgement.seq
    await response.close()


@pytest.mark.parametrize(
    "authorization, code, challenge",
    [
        ("Bearer not-a-jwt", "token_invalid", INVALID),
        ("Bearer " + mint_reva_token("alice", JWT_SECRET), "token_invalid", INVALID),
        ("Basic YWxpY2U6c2VjcmV0", "not_authenticated", "Bearer"),
        ("Bearer ", "not_authenticated", "Bearer"),
    ],
    ids=["garbage", "reva-token-as-bearer", "basic", "empty-bearer"],
)
async def test_invalid_authorization_header(service, authorization, code, challenge):
    await assert_rejected(service, [("authorization", authorization)], code, challenge)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_other_methods_not_allowed(service, method):
    response = await request(service.http_port, "/sse", [("content-length", "0")], method=method)
    body = await response.read_to_end()

    assert response.status == 405
    assert response.header("allow") == "GET, HEAD"
    assert body == b""
    await response.close()


async def test_unknown_path_not_found(service):
    response = await request(service.http_port, "/sse/")
    await response.read_to_end()

    assert response.status == 404
    await response.close()
