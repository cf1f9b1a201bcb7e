"""
Unit tests of the service registry layout, the registry settings and the
choice of the advertised address.
"""

import base64
import ipaddress
import json

import pytest

from sse import advertise
from sse.conf import load_config
from sse.exceptions import ConfigurationError
from sse.parsing import parse_registry
from sse.registry import (
    SERVICE_NAME,
    build_service,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    node_metadata,
    registry_connect_options,
    service_key,
)

NODE_UUID = "5c9e4b2e-3f1a-4d6b-9c8e-7a2f1b0d3e4c"
KEY = f"com.owncloud.sse.sse@{NODE_UUID}@0.1.0"


def config(**environ):
    return load_config(environ={"SSE_JWT_SECRET": "secret", **environ})


def test_service_key_joins_name_uuid_version():
    assert service_key(SERVICE_NAME, NODE_UUID, "0.1.0") == KEY


def test_encode_key_of_ocis_gateway():
    # The key that `nats kv ls service-registry` lists for the gateway of an
    # oCIS 5.0.5 deployment, which registered under the plain service name.
    assert encode_key("com.owncloud.api.gateway") == "ONSXE5TJMNSS24TFM5UXG5DSPFPWG33NFZXXO3TDNRXXKZBOMFYGSLTHMF2GK53BPE======"


def test_encode_key_of_node():
    assert encode_key(KEY) == (
        "ONSXE5TJMNSS24TFM5UXG5DSPFPWG33NFZXXO3TDNRXXKZBOONZWKLTTONSUANLDHFSTIYRSMUWTGZRRMEWTIZBWMIWT"
        "SYZYMUWTOYJSMYYWEMDEGNSTIY2AGAXDCLRQ"
    )


def test_encoded_key_is_valid_nats_key():
    # NATS keys allow letters, digits and -/_=. only.
    assert set(encode_key(KEY)) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=")


def test_decode_key_round_trip():
    assert decode_key(encode_key(KEY)) == KEY


def test_decode_key_rejects_other_table():
    other = base64.b32encode(b"other-table_com.owncloud.sse.sse").decode()

    with pytest.raises(ValueError, match="is not a key of the 'service-registry' table"):
        decode_key(other)


def test_build_service_has_one_node():
    service = build_service(SERVICE_NAME, "0.1.0", f"{SERVICE_NAME}-{NODE_UUID}", "10.0.0.7:9135", {"protocol": "http"})

    assert service == {
        "name": "com.owncloud.sse.sse",
        "version": "0.1.0",
        "metadata": None,
        "endpoints": [],
        "nodes": [
            {
                "id": "com.owncloud.sse.sse-5c9e4b2e-3f1a-4d6b-9c8e-7a2f1b0d3e4c",
                "address": "10.0.0.7:9135",
                "metadata": {"protocol": "http"},
            }
        ],
    }


def test_encode_value_exact_bytes():
    service = build_service(SERVICE_NAME, "0.1.0", f"{SERVICE_NAME}-{NODE_UUID}", "10.0.0.7:9135", {"protocol": "http"})
    service_json = (
        '{"name":"com.owncloud.sse.sse","version":"0.1.0","metadata":null,"endpoints":[],'
        '"nodes":[{"id":"com.owncloud.sse.sse-5c9e4b2e-3f1a-4d6b-9c8e-7a2f1b0d3e4c",'
        '"address":"10.0.0.7:9135","metadata":{"protocol":"http"}}]}'
    )

    value = encode_value(KEY, service)

    envelope = json.loads(value)
    assert list(envelope) == ["key", "data", "metadata"]
    assert envelope["key"] == KEY
    assert envelope["metadata"] is None
    # Go's encoding/json writes a []byte as standard base64 with padding.
    assert base64.b64decode(envelope["data"], validate=True).decode() == service_json
    assert value == (
        '{"key":"' + KEY + '","data":"' + base64.b64encode(service_json.encode()).decode() + '","metadata":null}'
    ).encode()


def test_decode_value_round_trip():
    service = build_service(SERVICE_NAME, "0.1.0", "node", "[::1]:9135", {"protocol": "http"})

    assert decode_value(encode_value(KEY, service)) == (KEY, service)


def test_node_metadata_plain_http():
    assert node_metadata(config()) == {"protocol": "http", "registry": "nats-js-kv", "server": "http", "transport": "http"}


def test_node_metadata_with_tls():
    metadata = node_metadata(config(OCIS_HTTP_TLS_ENABLED="true"))

    assert metadata["protocol"] == "http"
    assert metadata["use_tls"] == "true"


def test_registry_connection_defaults_to_events():
    options = registry_connect_options(
        config(SSE_EVENTS_ENDPOINT="127.0.0.1:4222", SSE_EVENTS_AUTH_USERNAME="events", SSE_EVENTS_AUTH_PASSWORD="pw")
    )

    assert options["servers"] == ["nats://127.0.0.1:4222"]
    assert options["name"] == "sse-registry"
    assert options["user"] == "events"
    assert options["password"] == "pw"


def test_registry_connection_own_address_and_credentials():
    options = registry_connect_options(
        config(
            SSE_EVENTS_ENDPOINT="127.0.0.1:4222",
            SSE_EVENTS_AUTH_USERNAME="events",
            SSE_EVENTS_AUTH_PASSWORD="pw",
            MICRO_REGISTRY_ADDRESS="127.0.0.1:5222,127.0.0.1:5223",
            MICRO_REGISTRY_AUTH_USERNAME="registry",
            MICRO_REGISTRY_AUTH_PASSWORD="secret",
        )
    )

    assert options["servers"] == ["nats://127.0.0.1:5222", "nats://127.0.0.1:5223"]
    assert options["user"] == "registry"
    assert options["password"] == "secret"


@pytest.mark.parametrize(
    "text, registry",
    [("nats-js-kv", "nats-js-kv"), ("NATS-JS-KV", "nats-js-kv"), ("natsjs", "nats-js-kv"), ("nats-js", "nats-js-kv"), ("none", ""), ("", "")],
)
def test_parse_registry(text, registry):
    assert parse_registry(text) == registry


@pytest.mark.parametrize("text", ["memory", "kubernetes", "consul", "nats"])
def test_parse_registry_rejects(text):
    with pytest.raises(ValueError, match="expected nats-js-kv"):
        parse_registry(text)


def test_registry_defaults():
    defaults = config()

    assert defaults.registry == "nats-js-kv"
    assert defaults.registry_address == ""
    assert defaults.registry_ttl == 30.0
    assert defaults.registry_interval == 25.0


def test_micro_registry_is_fallback():
    assert config(MICRO_REGISTRY="none").registry == ""
    assert config(MICRO_REGISTRY="none", SSE_REGISTRY="nats-js-kv").registry == "nats-js-kv"


def test_invalid_registry_names_variable():
    with pytest.raises(ConfigurationError, match=r"^SSE_REGISTRY='kubernetes' is invalid: expected nats-js-kv"):
        config(SSE_REGISTRY="kubernetes")


def test_interval_must_be_below_ttl():
    with pytest.raises(ConfigurationError, match=r"^EXPERIMENTAL_REGISTER_INTERVAL='30s' is invalid: .* below the TTL of 30s"):
        config(EXPERIMENTAL_REGISTER_INTERVAL="30s")


def test_interval_unchecked_without_registry():
    assert config(SSE_REGISTRY="none", EXPERIMENTAL_REGISTER_INTERVAL="1m").registry_interval == 60.0


def test_zero_ttl_rejected():
    with pytest.raises(ConfigurationError, match=r"^EXPERIMENTAL_REGISTER_TTL='0s' is invalid: expected a Go duration longer than zero"):
        config(EXPERIMENTAL_REGISTER_TTL="0s")


def ips(*texts):
    return [ipaddress.ip_address(text) for text in texts]


@pytest.mark.parametrize(
    "candidates, chosen",
    [
        (["127.0.0.1", "203.0.113.9", "192.168.1.20"], "192.168.1.20"),
        (["127.0.0.1", "fd12::5", "10.1.2.3"], "10.1.2.3"),
        (["127.0.0.1", "fd12::5", "2001:db8::7"], "fd12::5"),
        (["::1", "fe80::1", "203.0.113.9"], "203.0.113.9"),
        (["100.64.0.9", "172.16.3.4"], "100.64.0.9"),
        (["127.0.0.1", "::1"], "127.0.0.1"),
    ],
)
def test_choose_ip_prefers_private(candidates, chosen):
    assert advertise.choose_ip(ips(*candidates)) == ipaddress.ip_address(chosen)


def test_choose_ip_without_candidates():
    assert advertise.choose_ip(ips("fe80::1")) is None


def test_advertised_address_is_bind_address():
    assert advertise.advertised_address(config(SSE_HTTP_ADDR="127.0.0.1:9135")) == "127.0.0.1:9135"


@pytest.mark.parametrize("bind", ["0.0.0.0:9135", ":9135", "[::]:9135"])
def test_advertised_address_for_every_interface(monkeypatch, bind):
    monkeypatch.setattr(advertise, "interface_ips", lambda: ips("127.0.0.1", "10.20.30.40"))

    assert advertise.advertised_address(config(SSE_HTTP_ADDR=bind)) == "10.20.30.40:9135"


def test_advertised_ipv6_address_in_brackets(monkeypatch):
    monkeypatch.setattr(advertise, "interface_ips", lambda: ips("::1", "fd00::20"))

    assert advertise.advertised_address(config(SSE_HTTP_ADDR="[::]:9135")) == "[fd00::20]:9135"


def test_advertised_loopback_warns(monkeypatch, caplog):
    monkeypatch.setattr(advertise, "interface_ips", lambda: ips("127.0.0.1"))

    assert advertise.advertised_address(config(SSE_HTTP_ADDR="0.0.0.0:9135")) == "127.0.0.1:9135"
    assert "Set SSE_REGISTRY_ADVERTISE_ADDR" in caplog.text


def test_advertise_addr_wins(monkeypatch):
    monkeypatch.setattr(advertise, "interface_ips", lambda: ips("10.20.30.40"))

    address = advertise.advertised_address(config(SSE_HTTP_ADDR="0.0.0.0:9135", SSE_REGISTRY_ADVERTISE_ADDR="sse.internal:8135"))

    assert address == "sse.internal:8135"


def test_interface_ips_of_this_host():
    found = advertise.interface_ips()

    assert ipaddress.ip_address("127.0.0.1") in found
