import pytest
from django.test import override_settings

from sse.conf import get_config, load_config
from sse.parsing import (
    Address,
    parse_address,
    parse_bool,
    parse_duration,
    parse_list,
    parse_log_level,
    parse_nats_servers,
    parse_readable_file,
    parse_root,
    parse_tracing_type,
    redact_url,
)
from sse.exceptions import ConfigurationError


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("0", 0.0),
        ("0s", 0.0),
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("2us", 2e-6),
        ("2µs", 2e-6),
        ("10ns", 1e-8),
        (".5s", 0.5),
        ("1h2m3s4ms", 3723.004),
        ("+5s", 5.0),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30", "", "s", "1d", "5 s", "1s2", "abc", "1.2.3s", "+"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="expected a Go duration"):
        parse_duration(text)


def test_parse_duration_rejects_negative():
    with pytest.raises(ValueError, match="negative durations are not allowed"):
        parse_duration("-5s")


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_parse_bool_true(text):
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_parse_bool_false(text):
    assert parse_bool(text) is False


@pytest.mark.parametrize("text", ["yes", "on", "tRUE", " true", ""])
def test_parse_bool_rejects(text):
    with pytest.raises(ValueError, match="expected one of 1, t, T"):
        parse_bool(text)


def test_parse_list():
    assert parse_list(" a, b ,,c ,") == ("a", "b", "c")


@pytest.mark.parametrize(
    "text, address",
    [
        ("127.0.0.1:9135", Address("127.0.0.1", 9135)),
        (":9135", Address("", 9135)),
        ("[::1]:80", Address("::1", 80)),
        ("localhost:65535", Address("localhost", 65535)),
    ],
)
def test_parse_address(text, address):
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["9135", "host:", "host:0", "host:65536", "host:http", "::1:80"])
def test_parse_address_rejects(text):
    with pytest.raises(ValueError):
        parse_address(text)


def test_parse_nats_servers():
    assert parse_nats_servers("127.0.0.1:4222, nats://a:1,tls://user:pw@b:2") == (
        "nats://127.0.0.1:4222",
        "nats://a:1",
        "tls://user:pw@b:2",
    )


@pytest.mark.parametrize("text", ["", ",", "http://a:1", "nats://a"])
def test_parse_nats_servers_rejects(text):
    with pytest.raises(ValueError):
        parse_nats_servers(text)


@pytest.mark.parametrize("text, root", [("/", ""), ("/base/", "/base"), ("/a/b", "/a/b")])
def test_parse_root(text, root):
    assert parse_root(text) == root


@pytest.mark.parametrize("text", ["base", "/a//b", "/a?b"])
def test_parse_root_rejects(text):
    with pytest.raises(ValueError):
        parse_root(text)


def test_defaults():
    config = load_config(environ={})

    assert config.http_addr == Address("127.0.0.1", 9135)
    assert config.debug_addr == Address("127.0.0.1", 9139)
    assert config.http_root == ""
    assert config.keepalive_interval == 0.0
    assert config.events_endpoint == ("nats://127.0.0.1:9233",)
    assert config.events_cluster == "ocis-cluster"
    assert config.jwt_secret == ""
    assert set(config.sources.values()) == {"default"}


def test_service_variable_beats_ocis_variable():
    config = load_config(environ={"OCIS_JWT_SECRET": "shared", "SSE_JWT_SECRET": "own"})

    assert config.jwt_secret == "own"
    assert config.sources["jwt_secret"] == "SSE_JWT_SECRET"


def test_ocis_variable_used_when_service_variable_empty():
    config = load_config(environ={"OCIS_EVENTS_ENDPOINT": "nats:4222", "SSE_EVENTS_ENDPOINT": ""})

    assert config.events_endpoint == ("nats://nats:4222",)
    assert config.sources["events_endpoint"] == "OCIS_EVENTS_ENDPOINT"


def test_environment_beats_settings():
    config = load_config(
        environ={"SSE_KEEPALIVE_INTERVAL": "10s"},
        overrides={"KEEPALIVE_INTERVAL": "20s", "HTTP_ROOT": "/x"},
    )

    assert config.keepalive_interval == 10.0
    assert config.http_root == "/x"
    assert config.sources["http_root"] == "settings.SSE"


def test_settings_accept_typed_values():
    config = load_config(environ={}, overrides={"KEEPALIVE_INTERVAL": 2.5, "EVENTS_ENABLE_TLS": True})

    assert config.keepalive_interval == 2.5
    assert config.events_enable_tls is True


def test_invalid_environment_value_message():
    with pytest.raises(ConfigurationError) as error:
        load_config(environ={"SSE_KEEPALIVE_INTERVAL": "30"})

    assert str(error.value) == (
        "SSE_KEEPALIVE_INTERVAL='30' is invalid: expected a Go duration such as 30s, 1m30s, "
        "1.5h or 500ms (units ns, us, ms, s, m, h); a bare number is only allowed as 0"
    )


def test_invalid_ocis_value_names_ocis_variable():
    with pytest.raises(ConfigurationError, match="^OCIS_INSECURE='yes' is invalid"):
        load_config(environ={"OCIS_INSECURE": "yes"})


def test_invalid_settings_value_names_key():
    with pytest.raises(ConfigurationError, match=r"^settings.SSE\['HTTP_ADDR'\]='nowhere' is invalid"):
        load_config(environ={}, overrides={"HTTP_ADDR": "nowhere"})


def test_unknown_settings_key():
    with pytest.raises(ConfigurationError, match=r"^settings.SSE\['KEEPALIVE'\]='1s' is invalid: unknown key"):
        load_config(environ={}, overrides={"KEEPALIVE": "1s"})


def test_same_port_for_http_and_debug():
    with pytest.raises(ConfigurationError, match="^SSE_DEBUG_ADDR='127.0.0.1:9135' is invalid: the debug server needs a port of its own"):
        load_config(environ={"SSE_DEBUG_ADDR": "127.0.0.1:9135"})


def test_config_is_immutable():
    config = load_config(environ={})

    with pytest.raises(AttributeError):
        config.jwt_secret = "changed"


def test_get_config_follows_override_settings(monkeypatch):
    monkeypatch.delenv("SSE_KEEPALIVE_INTERVAL", raising=False)

    with override_settings(SSE={"KEEPALIVE_INTERVAL": "3s"}):
        assert get_config().keepalive_interval == 3.0
    with override_settings(SSE={"KEEPALIVE_INTERVAL": "4s"}):
        assert get_config().keepalive_interval == 4.0


@pytest.mark.parametrize("text, level", [("INFO", "info"), ("warn", "warn"), (" Trace ", "trace"), ("PANIC", "panic")])
def test_parse_log_level(text, level):
    assert parse_log_level(text) == level


@pytest.mark.parametrize("text", ["warning", "verbose", ""])
def test_parse_log_level_rejects(text):
    with pytest.raises(ValueError, match="expected one of panic, fatal, error, warn, info, debug, trace"):
        parse_log_level(text)


@pytest.mark.parametrize("text, tracing_type", [("", "jaeger"), ("Jaeger", "jaeger"), ("otlp", "otlp")])
def test_parse_tracing_type(text, tracing_type):
    assert parse_tracing_type(text) == tracing_type


def test_parse_readable_file(tmp_path):
    path = tmp_path / "ca.pem"
    path.write_text("pem")

    assert parse_readable_file(str(path)) == str(path)
    with pytest.raises(ValueError, match="expected the path of an existing file"):
        parse_readable_file(str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="expected the path of an existing file"):
        parse_readable_file(str(tmp_path))


def test_certificate_without_key(tmp_path):
    certificate = tmp_path / "cert.pem"
    certificate.write_text("pem")

    with pytest.raises(ConfigurationError, match="^OCIS_HTTP_TLS_KEY='' is invalid: OCIS_HTTP_TLS_CERTIFICATE and OCIS_HTTP_TLS_KEY must be set together"):
        load_config(environ={"OCIS_HTTP_TLS_CERTIFICATE": str(certificate)})


def test_tracing_without_destination():
    with pytest.raises(ConfigurationError, match="^SSE_TRACING_ENDPOINT='' is invalid: tracing is enabled"):
        load_config(environ={"OCIS_TRACING_ENABLED": "true"})


def test_secret_value_masked_in_error():
    error = ConfigurationError("SSE_DEBUG_TOKEN", "token-value", "too short", secret=True)

    assert str(error) == "SSE_DEBUG_TOKEN='***' is invalid: too short"


def test_cors_defaults_allow_resume_and_reva_headers():
    config = load_config(environ={})

    assert config.cors_allow_origins == ("*",)
    assert config.cors_allow_methods == ("GET",)
    assert "Last-Event-ID" in config.cors_allow_headers
    assert "X-Access-Token" in config.cors_allow_headers
    assert config.cors_allow_credentials is True


@pytest.mark.parametrize(
    "text, redacted",
    [
        ("nats://bob:natspw@127.0.0.1:9233", "nats://bob:***@127.0.0.1:9233"),
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("nats://a:1,tls://u:p@b:2", "nats://a:1,tls://u:***@b:2"),
        ("nats://token@host:4222", "nats://token@host:4222"),
        ("plain text", "plain text"),
    ],
)
def test_redact_url(text, redacted):
    assert redact_url(text) == redacted
