"""
The "SSE settings" admin page, through Django's test client.
"""

import html as html_module
import re

import pytest

from sse import metrics
from sse.conf import SSE_FIELDS, reload_config
from sse.overview import SECRET_MASK, format_duration
from sse.parsing import parse_duration
from sse.status import status

PAGE = "/admin/sse/settings/"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Unset every variable of the configuration, and re-read it before and after the test."""
    for config_field in SSE_FIELDS.values():
        for variable in config_field.metadata["env"]:
            monkeypatch.delenv(variable, raising=False)
    reload_config()
    yield
    monkeypatch.undo()
    reload_config()


def cell(html, name, column):
    """Return the text of the ``column`` cell in the row of setting ``name``, HTML entities decoded."""
    row = re.search(rf'<tr id="setting-{name}">(.*?)</tr>', html, re.DOTALL)
    assert row is not None, f"no row for {name}"
    match = re.search(rf'<td class="{column}">(.*?)</td>', row.group(1), re.DOTALL)
    assert match is not None, f"no {column} cell for {name}"
    return html_module.unescape(match.group(1))


def live(html, key):
    match = re.search(rf'<td id="live-{key}">(.*?)</td>', html)
    assert match is not None, f"no live count {key}"
    return match.group(1)


def get_page(client):
    response = client.get(PAGE)
    assert response.status_code == 200
    return response.content.decode()


def test_page_lists_every_setting(admin_client):
    html = get_page(admin_client)

    assert "<title>SSE settings |" in html
    for name, config_field in SSE_FIELDS.items():
        metadata = config_field.metadata
        assert f"<code>{name.upper()}</code>" in html
        assert cell(html, name.upper(), "source") == "default"
        assert cell(html, name.upper(), "description") == metadata["description"]
        variables = cell(html, name.upper(), "variables")
        for variable in metadata["env"]:
            assert f"<code>{variable}</code>" in variables


def test_page_shows_defaults_as_values(admin_client):
    html = get_page(admin_client)

    assert cell(html, "HTTP_ADDR", "value") == "127.0.0.1:9135"
    assert cell(html, "HTTP_ADDR", "default") == "127.0.0.1:9135"
    assert cell(html, "KEEPALIVE_INTERVAL", "value") == "0s"
    assert cell(html, "EVENTS_ENDPOINT", "value") == "nats://127.0.0.1:9233"
    assert cell(html, "CORS_ALLOW_CREDENTIALS", "value") == "true"
    assert cell(html, "JWT_SECRET", "value") == ""


def test_variable_named_as_source(admin_client, monkeypatch):
    monkeypatch.setenv("SSE_KEEPALIVE_INTERVAL", "1m30s")
    monkeypatch.setenv("OCIS_EVENTS_ENDPOINT", "127.0.0.1:4333")
    reload_config()

    html = get_page(admin_client)

    assert cell(html, "KEEPALIVE_INTERVAL", "source") == "SSE_KEEPALIVE_INTERVAL"
    assert cell(html, "KEEPALIVE_INTERVAL", "value") == "90s"
    assert cell(html, "EVENTS_ENDPOINT", "source") == "OCIS_EVENTS_ENDPOINT"
    assert cell(html, "EVENTS_ENDPOINT", "value") == "nats://127.0.0.1:4333"


def test_sse_variable_wins_over_ocis_variable(admin_client, monkeypatch):
    monkeypatch.setenv("OCIS_LOG_LEVEL", "debug")
    monkeypatch.setenv("SSE_LOG_LEVEL", "warn")
    reload_config()

    html = get_page(admin_client)

    assert cell(html, "LOG_LEVEL", "source") == "SSE_LOG_LEVEL"
    assert cell(html, "LOG_LEVEL", "value") == "warn"


def test_settings_dict_named_as_source(admin_client, settings):
    settings.SSE = {"HTTP_ROOT": "/push"}

    html = get_page(admin_client)

    assert cell(html, "HTTP_ROOT", "source") == "settings.SSE"
    assert cell(html, "HTTP_ROOT", "value") == "/push"


def test_secret_values_never_rendered(admin_client, monkeypatch):
    secrets = {
        "SSE_JWT_SECRET": "jwt-secret-that-must-not-leak",
        "OCIS_EVENTS_AUTH_PASSWORD": "nats-password-that-must-not-leak",
    }
    for variable, value in secrets.items():
        monkeypatch.setenv(variable, value)
    reload_config()

    html = get_page(admin_client)

    for value in secrets.values():
        assert value not in html
    assert cell(html, "JWT_SECRET", "value") == SECRET_MASK
    assert cell(html, "JWT_SECRET", "source") == "SSE_JWT_SECRET"
    assert cell(html, "EVENTS_AUTH_PASSWORD", "value") == SECRET_MASK
    assert cell(html, "EVENTS_AUTH_PASSWORD", "source") == "OCIS_EVENTS_AUTH_PASSWORD"
    assert cell(html, "DEBUG_TOKEN", "value") == ""


def test_secret_hidden_while_configuration_invalid(admin_client, monkeypatch):
    monkeypatch.setenv("SSE_JWT_SECRET", "jwt-secret-that-must-not-leak")
    monkeypatch.setenv("SSE_KEEPALIVE_INTERVAL", "soon")
    reload_config()

    html = get_page(admin_client)

    assert "jwt-secret-that-must-not-leak" not in html
    assert cell(html, "JWT_SECRET", "value") == ""


def test_invalid_configuration_shows_error(admin_client, monkeypatch):
    monkeypatch.setenv("SSE_KEEPALIVE_INTERVAL", "soon")
    reload_config()

    html = get_page(admin_client)

    error = re.search(r'<p class="errornote" id="sse-configuration-error">(.*?)</p>', html, re.DOTALL)
    assert error is not None
    assert "SSE_KEEPALIVE_INTERVAL=&#x27;soon&#x27; is invalid" in error.group(1)
    assert cell(html, "KEEPALIVE_INTERVAL", "default") == "0s"
    assert cell(html, "KEEPALIVE_INTERVAL", "value") == ""
    assert cell(html, "KEEPALIVE_INTERVAL", "source") == ""


def test_valid_configuration_shows_no_error(admin_client):
    html = get_page(admin_client)

    assert 'id="sse-configuration-error"' not in html


def test_anonymous_user_redirected_to_login(client):
    response = client.get(PAGE)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={PAGE}"


def test_non_staff_user_redirected_to_login(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="viewer-password")
    client.force_login(user)

    response = client.get(PAGE)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={PAGE}"


def test_admin_index_links_settings_page(admin_client):
    response = admin_client.get("/admin/")

    assert response.status_code == 200
    assert f'<a href="{PAGE}">SSE settings</a>' in response.content.decode()


def test_app_index_lists_settings_page(admin_client):
    response = admin_client.get("/admin/sse/")

    assert response.status_code == 200
    assert f'<a href="{PAGE}">SSE settings</a>' in response.content.decode()


def test_live_counts_shown(admin_client):
    before = get_page(admin_client)
    received = int(live(before, "received-delivered"))
    sent = int(live(before, "sent"))
    dropped = int(live(before, "dropped-slow_client"))

    metrics.EVENTS_RECEIVED.labels(result="delivered").inc(2)
    metrics.DELIVERIES.inc(5)
    metrics.EVENTS_DROPPED.labels(reason="slow_client").inc(3)
    for user_id in ("admin-page-user-a", "admin-page-user-a", "admin-page-user-b"):
        status.stream_opened(user_id)
    try:
        html = get_page(admin_client)
    finally:
        for user_id in ("admin-page-user-a", "admin-page-user-a", "admin-page-user-b"):
            status.stream_closed(user_id)

    assert live(html, "streams") == "3"
    assert live(html, "users") == "2"
    assert live(html, "nats") == "not running"
    assert int(live(html, "received-delivered")) == received + 2
    assert int(live(html, "sent")) == sent + 5
    assert int(live(html, "dropped-slow_client")) == dropped + 3
    assert "admin-page-user" not in html


@pytest.mark.parametrize(
    "seconds, text",
    [(0.0, "0s"), (30.0, "30s"), (90.0, "90s"), (0.25, "0.25s"), (2e-6, "0.000002s")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
