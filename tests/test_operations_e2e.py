"""
End-to-end tests of the operational settings: logging, the debug server,
profiling, the span page and trace export, each set through the
environment of a real ``runsse`` process.
"""

import asyncio
import http.server
import json
import pstats
import re
import threading
import urllib.request

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from sse.wire import encode_envelope

from .conftest import token_for
from .http import request
from .service import JWT_SECRET, ServiceProcess
from .test_service_e2e import run_command

TRACE_ID = "7d2f9a41c0b8e35f6a1d4c7e9b2f0a83"


async def open_stream(service, user_id, headers=()):
    response = await request(service.http_port, "/sse", [("x-access-token", token_for(user_id)), *headers])
    assert response.status == 200
    await response.read_block()
    return response


def debug_get(service, path, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{service.debug_port}{path}", headers=headers), timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_debug_level_json_log_file(nats_url, user_id, tmp_path):
    log_file = tmp_path / "sse.log"
    service = ServiceProcess(nats_url, SSE_LOG_LEVEL="debug", SSE_LOG_FILE=str(log_file)).start()
    token = token_for(user_id)
    try:
        stream = await open_stream(service, user_id, [("X-Request-ID", "request-42")])
        await stream.close()
        await asyncio.sleep(0.3)
    finally:
        assert service.stop() == 0

    entries = json_lines(log_file.read_text())
    opened = [entry for entry in entries if entry["message"] == "Stream opened"]
    closed = [entry for entry in entries if entry["message"] == "Stream closed"]
    assert opened[0]["level"] == "debug"
    assert opened[0]["service"] == "sse"
    assert opened[0]["request_id"] == "request-42"
    assert opened[0]["user_id"] == user_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", opened[0]["time"])
    assert closed[0]["request_id"] == "request-42"
    assert any(entry["message"].startswith("Starting sse") and entry["level"] == "info" for entry in entries)
    assert token not in log_file.read_text()
    assert JWT_SECRET not in log_file.read_text()
    assert "Starting sse" not in service.output()


def test_ocis_log_level_fallback_hides_info(nats_url):
    service = ServiceProcess(nats_url, SSE_LOG_LEVEL="", OCIS_LOG_LEVEL="warn").start()
    assert service.stop() == 0

    assert "Starting sse" not in service.output()


def test_default_log_level_is_error(nats_url):
    service = ServiceProcess(nats_url, SSE_LOG_LEVEL="").start()
    assert service.stop() == 0

    assert service.output() == ""


def test_pretty_coloured_log(nats_url):
    service = ServiceProcess(nats_url, SSE_LOG_LEVEL="info", SSE_LOG_PRETTY="true", SSE_LOG_COLOR="true").start()
    assert service.stop() == 0

    assert re.search(r"^\d{4}-\d\d-\d\dT[\d:.]+Z \x1b\[32mINF\x1b\[0m Starting sse: ", service.output(), re.MULTILINE)


def test_pretty_log_without_colour(nats_url):
    service = ServiceProcess(nats_url, SSE_LOG_LEVEL="INFO", SSE_LOG_PRETTY="1").start()
    assert service.stop() == 0

    assert re.search(r"^\S+ INF Starting sse: ", service.output(), re.MULTILINE)
    assert "\x1b[" not in service.output()


@pytest.mark.parametrize(
    "environment, message",
    [
        ({"SSE_LOG_LEVEL": "verbose"}, "SSE_LOG_LEVEL='verbose' is invalid: expected one of panic, fatal, error, warn, info, debug, trace"),
        ({"SSE_LOG_PRETTY": "yes"}, "SSE_LOG_PRETTY='yes' is invalid: expected one of 1, t, T"),
        ({"SSE_LOG_FILE": "/nonexistent-directory/sse.log"}, "SSE_LOG_FILE='/nonexistent-directory/sse.log' is invalid: the file cannot be opened for appending"),
        ({"SSE_DEBUG_PPROF": "on"}, "SSE_DEBUG_PPROF='on' is invalid"),
        ({"SSE_TRACING_TYPE": "zipkin"}, "SSE_TRACING_TYPE='zipkin' is invalid: expected jaeger, otlp"),
        ({"SSE_TRACING_ENABLED": "true"}, "SSE_TRACING_ENDPOINT='' is invalid: tracing is enabled, so set SSE_TRACING_ENDPOINT"),
        ({"SSE_DEBUG_ADDR": "localhost"}, "SSE_DEBUG_ADDR='localhost' is invalid: expected host:port"),
        ({"SSE_EVENTS_TLS_ROOT_CA_CERTIFICATE": "/nonexistent/ca.pem"}, "SSE_EVENTS_TLS_ROOT_CA_CERTIFICATE='/nonexistent/ca.pem' is invalid: expected the path of an existing file"),
        ({"OCIS_EVENTS_ENDPOINT": "http://nats:4222"}, "OCIS_EVENTS_ENDPOINT='http://nats:4222' is invalid: unsupported scheme 'http'"),
        ({"SSE_HTTP_ROOT": "sse"}, "SSE_HTTP_ROOT='sse' is invalid: expected a path that starts with /"),
        ({"SSE_KEEPALIVE_INTERVAL": "-5s"}, "SSE_KEEPALIVE_INTERVAL='-5s' is invalid: negative durations are not allowed"),
    ],
    ids=["log-level", "log-pretty", "log-file", "pprof", "tracing-type", "tracing-without-endpoint", "debug-addr", "root-ca", "endpoint-scheme", "http-root", "negative-keepalive"],
)
def test_invalid_setting_stops_startup(nats_url, environment, message):
    result = run_command("runsse", SSE_EVENTS_ENDPOINT=nats_url, SSE_JWT_SECRET="secret", **environment)

    assert result.returncode == 1
    assert message in result.stderr


def test_debug_token_protects_metrics_and_config(nats_url):
    service = ServiceProcess(nats_url, SSE_DEBUG_TOKEN="debug-token-value").start()
    try:
        for path in ("/metrics", "/config"):
            status, headers, body = debug_get(service, path)
            assert (path, status) == (path, 401)
            assert headers["WWW-Authenticate"] == "Bearer"
            assert json.loads(body) == {"error": "invalid or missing token"}
            assert debug_get(service, path, token="wrong")[0] == 401
            assert debug_get(service, path, token="debug-token-value")[0] == 200
        assert debug_get(service, "/healthz")[:3:2] == (200, b"OK\n")
        assert debug_get(service, "/readyz")[:3:2] == (200, b"OK\n")
    finally:
        assert service.stop() == 0


def test_config_endpoint_shows_sources_and_masks_secrets(nats_url):
    service = ServiceProcess(
        nats_url,
        SSE_KEEPALIVE_INTERVAL="1m30s",
        OCIS_EVENTS_CLUSTER="my-cluster",
        SSE_EVENTS_AUTH_PASSWORD="very-secret-password",
    ).start()
    try:
        status, headers, body = debug_get(service, "/config")
    finally:
        assert service.stop() == 0

    config = json.loads(body)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert config["keepalive_interval"] == {
        "value": 90.0,
        "source": "SSE_KEEPALIVE_INTERVAL",
        "env": ["SSE_KEEPALIVE_INTERVAL"],
        "default": "0s",
    }
    assert config["events_cluster"]["value"] == "my-cluster"
    assert config["events_cluster"]["source"] == "OCIS_EVENTS_CLUSTER"
    assert config["jwt_secret"]["value"] == "********"
    assert config["events_auth_password"]["value"] == "********"
    assert config["debug_token"]["value"] == ""
    assert config["http_root"] == {"value": "", "source": "default", "env": ["SSE_HTTP_ROOT"], "default": "/"}
    assert b"very-secret-password" not in body
    assert JWT_SECRET.encode() not in body


async def test_metrics_count_delivery(service, jetstream, user_id):
    before = service.metric("sse_delivery_latency_seconds_count")
    stream = await open_stream(service, user_id)

    await jetstream.publish("main-queue", encode_envelope([user_id], "measured", "x"))
    await stream.read_event()
    await stream.close()

    assert service.metric("sse_delivery_latency_seconds_count") == before + 1
    assert service.metric("sse_nats_connected") == 1
    assert service.metric('sse_events_received_total{result="delivered"}') >= 1


def test_pprof_off_by_default(service):
    assert debug_get(service, "/debug/pprof/tasks")[0] == 404
    assert debug_get(service, "/debug/tracez")[0] == 404


def test_pprof_tasks_and_profile(nats_url, tmp_path):
    service = ServiceProcess(nats_url, SSE_DEBUG_PPROF="true").start()
    try:
        status, _, tasks = debug_get(service, "/debug/pprof/tasks")
        profile_status, headers, profile = debug_get(service, "/debug/pprof/profile?seconds=1")
        invalid_status, _, invalid = debug_get(service, "/debug/pprof/profile?seconds=0")
    finally:
        assert service.stop() == 0

    assert status == 200
    assert re.match(rb"\d+ asyncio tasks\n", tasks)
    assert b"Bridge.run" in tasks
    assert b"threads" in tasks
    assert profile_status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    (tmp_path / "sse.pstats").write_bytes(profile)
    stats = pstats.Stats(str(tmp_path / "sse.pstats"))
    assert stats.total_calls > 0
    assert invalid_status == 400
    assert invalid == b"seconds='0' is invalid: expected a number greater than 0 and at most 300\n"


async def test_tracez_shows_stream_and_delivery_spans(nats_url, jetstream, user_id):
    service = ServiceProcess(nats_url, SSE_DEBUG_ZPAGES="true").start()
    try:
        stream = await open_stream(service, user_id)
        status, _, body = debug_get(service, "/debug/tracez")
        in_flight = json.loads(body)["in_flight"]

        await jetstream.publish("main-queue", encode_envelope([user_id], "z", "x"))
        await stream.read_event()
        recent = json.loads(debug_get(service, "/debug/tracez")[2])["recent"]
        await stream.close()
    finally:
        assert service.stop() == 0

    assert status == 200
    assert [(span["name"], span["kind"]) for span in in_flight] == [("GET /sse", "SERVER")]
    assert {span["name"] for span in recent} >= {"main-queue process", "sse send"}


class OTLPReceiver(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP endpoint on 127.0.0.1 that keeps every span it receives."""

    def __init__(self):
        self.spans = []
        self.paths = []
        super().__init__(("127.0.0.1", 0), OTLPHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class OTLPHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        self.server.paths.append(self.path)
        for resource_spans in export.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.server.spans.extend(scope_spans.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass


@pytest.mark.parametrize("setting", ["SSE_TRACING_COLLECTOR", "OCIS_TRACING_ENDPOINT"])
async def test_traces_exported_over_otlp(nats_url, jetstream, user_id, setting):
    receiver = OTLPReceiver()
    port = receiver.server_address[1]
    value = f"http://127.0.0.1:{port}/v1/traces" if setting == "SSE_TRACING_COLLECTOR" else f"127.0.0.1:{port}"
    service = ServiceProcess(nats_url, SSE_TRACING_ENABLED="true", SSE_TRACING_TYPE="otlp", **{setting: value}).start()
    try:
        stream = await open_stream(service, user_id)
        envelope = json.loads(encode_envelope([user_id], "traced", "x"))
        envelope["Metadata"]["traceparent"] = f"00-{TRACE_ID}-3e9c1b7d5a2f4e60-01"
        await jetstream.publish("main-queue", json.dumps(envelope).encode())
        await stream.read_event()
        await stream.close()
        await asyncio.sleep(0.2)
    finally:
        # Shutting down flushes the batch of spans.
        assert service.stop() == 0
        receiver.shutdown()

    spans = {span.name: span for span in receiver.spans}
    assert set(receiver.paths) == {"/v1/traces"}
    assert {"GET /sse", "main-queue process", "sse send"} <= set(spans)
    assert [link.trace_id.hex() for link in spans["main-queue process"].links] == [TRACE_ID]
    assert spans["sse send"].parent_span_id == spans["main-queue process"].span_id


def test_url_passwords_hidden(nats_url, tmp_path):
    host = nats_url.removeprefix("nats://")
    log_file = tmp_path / "sse.log"
    service = ServiceProcess(
        nats_url,
        SSE_EVENTS_ENDPOINT=f"nats://nobody:url-password@{host}",
        SSE_LOG_LEVEL="debug",
        SSE_LOG_FILE=str(log_file),
    )
    # The server has no users, so it ignores the credentials and accepts the connection.
    service.start()
    try:
        status, _, body = debug_get(service, "/config")
    finally:
        assert service.stop() == 0

    assert status == 200
    assert json.loads(body)["events_endpoint"]["value"] == [f"nats://nobody:***@{host}"]
    assert "url-password" not in log_file.read_text()
    assert f"nats://nobody:***@{host}" in log_file.read_text()
