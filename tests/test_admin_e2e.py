"""
The admin over a real ``runsse`` process: login, the "SSE settings" page
and the static files, all served on SSE_HTTP_ADDR with DEBUG off.
"""

import http.cookiejar
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

from sse.wire import encode_envelope

from .conftest import token_for
from .http import request
from .service import JWT_SECRET, ROOT, ServiceProcess

USERNAME = "operator"
PASSWORD = "operator-password-for-tests"
DJANGO_SECRET_KEY = "admin-e2e-django-secret-key-0123456789abcdef"
PAGE = "/admin/sse/settings/"


def manage(*args, **environment):
    """Run ``manage.py`` with the stand-alone settings and fail with its output if it fails."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SSE_", "OCIS_", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE="ssesite.settings", **environment)
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """A SQLite database set up with migrate and createsuperuser, as in the README."""
    path = tmp_path_factory.mktemp("admin") / "db.sqlite3"
    manage("migrate", "--noinput", DJANGO_DATABASE_PATH=str(path))
    manage(
        "createsuperuser",
        "--noinput",
        "--username",
        USERNAME,
        "--email",
        "operator@example.com",
        DJANGO_DATABASE_PATH=str(path),
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )
    return path


@pytest.fixture(scope="module")
def admin_service(nats_url, database):
    process = ServiceProcess(
        nats_url,
        DJANGO_DATABASE_PATH=str(database),
        DJANGO_SECRET_KEY=DJANGO_SECRET_KEY,
        SSE_KEEPALIVE_INTERVAL="45s",
        DJANGO_DEBUG="0",
    ).start()
    yield process
    assert process.stop() == 0, process.output()


class Browser:
    """An HTTP client with a cookie jar for SSE_HTTP_ADDR of ``service``, which bypasses any proxy."""

    def __init__(self, service):
        self.base = f"http://127.0.0.1:{service.http_port}"
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
        )

    def open(self, path, form=None):
        """Send a GET, or a POST of ``form``, to ``path`` and return the response after redirects."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            return self.opener.open(self.base + path, data, timeout=10)
        except urllib.error.HTTPError as error:
            return error

    def log_in(self, next_path):
        """Log in through the admin login form and return the page it redirects to."""
        login_path = f"/admin/login/?next={urllib.parse.quote(next_path)}"
        form_page = self.open(login_path).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form_page)
        assert token is not None, form_page
        return self.open(
            login_path,
            {
                "csrfmiddlewaretoken": token.group(1),
                "username": USERNAME,
                "password": PASSWORD,
                "next": next_path,
            },
        )


def test_anonymous_request_redirected_to_login(admin_service):
    response = Browser(admin_service).open(PAGE)

    assert response.status == 200
    assert response.url == f"http://127.0.0.1:{admin_service.http_port}/admin/login/?next={PAGE}"


def test_settings_page_after_login(admin_service):
    response = Browser(admin_service).log_in(PAGE)
    html = response.read().decode()

    assert response.status == 200
    assert response.url == f"http://127.0.0.1:{admin_service.http_port}{PAGE}"
    assert "<h1>SSE settings</h1>" in html
    assert re.search(
        r'<tr id="setting-HTTP_ADDR">.*?<td class="source">SSE_HTTP_ADDR</td>', html, re.DOTALL
    ), "SSE_HTTP_ADDR not shown as the source of HTTP_ADDR"
    assert f"127.0.0.1:{admin_service.http_port}" in html
    assert re.search(r'<td class="value">45s</td>\s*<td class="source">SSE_KEEPALIVE_INTERVAL</td>', html)
    assert '<td id="live-nats">consuming</td>' in html
    assert JWT_SECRET not in html
    assert DJANGO_SECRET_KEY not in html


def test_login_rejects_wrong_password(admin_service):
    browser = Browser(admin_service)
    form_page = browser.open("/admin/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form_page).group(1)

    response = browser.open(
        "/admin/login/",
        {"csrfmiddlewaretoken": token, "username": USERNAME, "password": "wrong", "next": PAGE},
    )

    assert response.status == 200
    assert response.url.endswith("/admin/login/")
    assert "Please enter the correct username and password" in response.read().decode()


async def test_live_counts_follow_streams_and_events(admin_service, jetstream, user_id):
    browser = Browser(admin_service)
    browser.log_in(PAGE).read()
    stream = await request(admin_service.http_port, "/sse", [("x-access-token", token_for(user_id))])
    assert stream.status == 200
    await stream.read_block()

    await jetstream.publish("main-queue", encode_envelope([user_id], "admin-page-test", "{}"))
    assert b"event: admin-page-test" in await stream.read_event()
    html = browser.open(PAGE).read().decode()
    await stream.close()

    assert '<td id="live-streams">1</td>' in html
    assert '<td id="live-users">1</td>' in html
    assert '<td id="live-received-delivered">1</td>' in html
    assert '<td id="live-sent">1</td>' in html
    assert user_id not in html


def test_static_file_served_with_debug_off(admin_service):
    response = Browser(admin_service).open("/static/admin/css/base.css")

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/css")
    assert b"body {" in response.read()


def test_missing_static_file_is_404(admin_service):
    response = Browser(admin_service).open("/static/admin/css/no-such-file.css")

    assert response.status == 404
