"""
End-to-end tests of the ways Django projects use the app: the publishing
API, stream tickets for the native EventSource, and the session cookie.
"""

import asyncio
import json
import sqlite3

import pytest

import sse
from sse.conf import reload_config
from sse.wire import encode_envelope

from .conftest import token_for
from .http import request
from .service import ServiceProcess
from .test_admin_e2e import DJANGO_SECRET_KEY, Browser, manage

OPENING = b": stream opened\n\n"


@pytest.fixture
def publishing_to(monkeypatch, nats_url):
    """Point the publishing API of this test process at the test NATS server."""
    monkeypatch.setenv("SSE_EVENTS_ENDPOINT", nats_url)
    reload_config()
    yield
    monkeypatch.delenv("SSE_EVENTS_ENDPOINT")
    reload_config()


async def open_stream(service, path="/sse", headers=()):
    response = await request(service.http_port, path, list(headers))
    assert response.status == 200
    assert await response.read_block() == OPENING
    return response


async def test_apublish_reaches_stream(service, publishing_to, user_id):
    stream = await open_stream(service, headers=[("x-access-token", token_for(user_id))])

    sequence = await sse.apublish([user_id], "from-django", "async\nmessage")

    assert await stream.read_event() == b"id: %d\nevent: from-django\ndata: async\ndata: message\n\n" % sequence
    await stream.close()


async def test_publish_from_sync_code(service, publishing_to, user_id):
    stream = await open_stream(service, headers=[("x-access-token", token_for(user_id))])

    sequence = await asyncio.to_thread(sse.publish, [user_id], "from-view", b"sync")

    assert await stream.read_event() == b"id: %d\nevent: from-view\ndata: sync\n\n" % sequence
    await stream.close()


async def test_publish_rejects_line_break_in_type():
    with pytest.raises(ValueError, match="contains a line break"):
        await sse.apublish(["alice"], "bad\ntype", "x")


async def post_ticket(service, headers):
    response = await request(service.http_port, "/sse/ticket", [*headers, ("content-length", "0")], method="POST")
    body = await response.read_to_end()
    await response.close()
    return response, body


async def test_ticket_opens_stream_once(service, jetstream, user_id):
    response, body = await post_ticket(service, [("x-access-token", token_for(user_id))])
    ticket = json.loads(body)

    assert response.status == 200
    assert response.header("cache-control") == "no-store"
    assert ticket["expires_in"] == 30
    stream = await open_stream(service, path=f"/sse?ticket={ticket['ticket']}")
    sequence = (await jetstream.publish("main-queue", encode_envelope([user_id], "t", "by ticket"))).seq
    assert await stream.read_event() == b"id: %d\nevent: t\ndata: by ticket\n\n" % sequence
    await stream.close()

    again = await request(service.http_port, f"/sse?ticket={ticket['ticket']}")
    assert again.status == 401
    assert json.loads(await again.read_to_end())["code"] == "ticket_used"
    await again.close()


@pytest.mark.parametrize(
    "ticket, code",
    [("not-a-ticket", "ticket_invalid"), ("eyJ1c2VyIjoiYWxpY2UifQ:1vRZqV:forged", "ticket_invalid")],
    ids=["garbage", "forged"],
)
async def test_invalid_ticket_rejected(service, ticket, code):
    response = await request(service.http_port, f"/sse?ticket={ticket}")

    assert response.status == 401
    assert json.loads(await response.read_to_end())["code"] == code
    await response.close()


async def test_ticket_needs_authentication(service):
    response, body = await post_ticket(service, [])

    assert response.status == 401
    assert json.loads(body)["code"] == "not_authenticated"


async def test_ticket_cannot_buy_ticket(service, user_id):
    _, body = await post_ticket(service, [("x-access-token", token_for(user_id))])
    ticket = json.loads(body)["ticket"]

    response = await request(service.http_port, f"/sse/ticket?ticket={ticket}", [("content-length", "0")], method="POST")
    assert response.status == 401
    await response.close()


async def test_ticket_endpoint_only_posts(service):
    response = await request(service.http_port, "/sse/ticket")
    await response.read_to_end()

    assert response.status == 405
    assert response.header("allow") == "POST"
    await response.close()


@pytest.fixture(scope="module")
def session_service(nats_url, tmp_path_factory):
    path = tmp_path_factory.mktemp("sessions") / "db.sqlite3"
    manage("migrate", "--noinput", DJANGO_DATABASE_PATH=str(path))
    manage(
        "createsuperuser",
        "--noinput",
        "--username",
        "operator",
        "--email",
        "operator@example.com",
        DJANGO_DATABASE_PATH=str(path),
        DJANGO_SUPERUSER_PASSWORD="operator-password-for-tests",
    )
    user_pk = sqlite3.connect(path).execute("SELECT id FROM auth_user WHERE username = 'operator'").fetchone()[0]
    process = ServiceProcess(nats_url, DJANGO_DATABASE_PATH=str(path), DJANGO_SECRET_KEY=DJANGO_SECRET_KEY).start()
    yield process, str(user_pk)
    assert process.stop() == 0, process.output()


def session_cookie(service):
    browser = Browser(service)
    browser.log_in("/admin/")
    (jar,) = [handler.cookiejar for handler in browser.opener.handlers if hasattr(handler, "cookiejar")]
    return {cookie.name: cookie.value for cookie in jar}["sessionid"]


async def test_session_cookie_same_origin(session_service, jetstream):
    service, user_pk = session_service
    cookie = await asyncio.to_thread(session_cookie, service)
    host = f"127.0.0.1:{service.http_port}"

    stream = await open_stream(service, headers=[("Cookie", f"sessionid={cookie}"), ("Origin", f"http://{host}")])
    sequence = (await jetstream.publish("main-queue", encode_envelope([user_pk], "s", "by session"))).seq

    assert await stream.read_event() == b"id: %d\nevent: s\ndata: by session\n\n" % sequence
    await stream.close()


async def test_session_cookie_rejected_cross_origin(session_service):
    service, _ = session_service
    cookie = await asyncio.to_thread(session_cookie, service)

    response = await request(
        service.http_port, "/sse", [("Cookie", f"sessionid={cookie}"), ("Origin", "http://elsewhere.example")]
    )

    assert response.status == 401
    assert json.loads(await response.read_to_end())["code"] == "not_authenticated"
    await response.close()
