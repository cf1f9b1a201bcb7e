"""
End-to-end tests of the NATS connection settings: credentials and TLS,
against nats-server processes configured for them.
"""

import asyncio
import datetime
import ipaddress
import ssl

import nats
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sse.embedded_nats import EmbeddedNATS
from sse.wire import encode_envelope

from .conftest import token_for
from .http import request
from .service import ServiceProcess, free_port

NATS_USER = "sse-bridge"
NATS_PASSWORD = "nats-password-that-must-not-be-logged"


def write_certificates(directory):
    """Write a CA and a server certificate for 127.0.0.1 signed by it; return (ca, cert, key) paths."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sse test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    paths = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tuple(str(path) for path in paths)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return write_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="module")
def secured_nats(certificates):
    """A nats-server that requires TLS and a user name and password."""
    ca, cert, key = certificates
    server = EmbeddedNATS(
        f"nats://127.0.0.1:{free_port()}",
        extra_args=["--tls", "--tlscert", cert, "--tlskey", key, "--user", NATS_USER, "--pass", NATS_PASSWORD],
    )
    server.start()
    yield server
    server.stop()


async def deliver_one(service, url, ca, user_id):
    """Open a stream, publish over TLS with credentials, and return the event block."""
    stream = await request(service.http_port, "/sse", [("x-access-token", token_for(user_id))])
    assert stream.status == 200
    await stream.read_block()

    connection = await nats.connect(url, tls=ssl.create_default_context(cafile=ca), user=NATS_USER, password=NATS_PASSWORD)
    try:
        sequence = (await connection.jetstream().publish("main-queue", encode_envelope([user_id], "secure", "ok"))).seq
    finally:
        await connection.close()

    block = await stream.read_event()
    await stream.close()
    return block, sequence


def assert_never_ready(service):
    try:
        service.start(ready_timeout=3.0)
    except AssertionError:
        pass
    else:
        raise AssertionError("the service became ready")
    assert service.get("/readyz") == (503, b"nats: not ready\n")
    assert service.stop() == 0


@pytest.mark.parametrize("prefix", ["SSE_EVENTS_", "OCIS_EVENTS_"])
async def test_tls_and_credentials(secured_nats, certificates, user_id, prefix):
    ca = certificates[0]
    url = f"nats://127.0.0.1:{secured_nats.port}"
    service = ServiceProcess(
        url,
        **{
            f"{prefix}ENABLE_TLS": "true",
            f"{prefix}TLS_ROOT_CA_CERTIFICATE": ca,
            f"{prefix}AUTH_USERNAME": NATS_USER,
            f"{prefix}AUTH_PASSWORD": NATS_PASSWORD,
            "SSE_LOG_LEVEL": "trace",
        },
    )
    await asyncio.to_thread(service.start)
    try:
        block, sequence = await deliver_one(service, url, ca, user_id)
        assert block == b"id: %d\nevent: secure\ndata: ok\n\n" % sequence
    finally:
        assert service.stop() == 0
    assert NATS_PASSWORD not in service.output()


async def test_tls_insecure_skips_verification(secured_nats, certificates, user_id):
    url = f"nats://127.0.0.1:{secured_nats.port}"
    service = ServiceProcess(
        url,
        SSE_EVENTS_ENABLE_TLS="true",
        SSE_EVENTS_TLS_INSECURE="true",
        SSE_EVENTS_AUTH_USERNAME=NATS_USER,
        SSE_EVENTS_AUTH_PASSWORD=NATS_PASSWORD,
    )
    await asyncio.to_thread(service.start)
    try:
        block, sequence = await deliver_one(service, url, certificates[0], user_id)
        assert block == b"id: %d\nevent: secure\ndata: ok\n\n" % sequence
    finally:
        assert service.stop() == 0


def test_untrusted_certificate_never_ready(secured_nats):
    service = ServiceProcess(
        f"nats://127.0.0.1:{secured_nats.port}",
        SSE_EVENTS_ENABLE_TLS="true",
        SSE_EVENTS_AUTH_USERNAME=NATS_USER,
        SSE_EVENTS_AUTH_PASSWORD=NATS_PASSWORD,
    )

    assert_never_ready(service)
    assert "CERTIFICATE_VERIFY_FAILED" in service.output()


def test_wrong_password_never_ready(secured_nats, certificates):
    service = ServiceProcess(
        f"nats://127.0.0.1:{secured_nats.port}",
        SSE_EVENTS_ENABLE_TLS="true",
        SSE_EVENTS_TLS_ROOT_CA_CERTIFICATE=certificates[0],
        SSE_EVENTS_AUTH_USERNAME=NATS_USER,
        SSE_EVENTS_AUTH_PASSWORD="wrong-password",
    )

    assert_never_ready(service)
    assert "Authorization Violation" in service.output()
    assert "wrong-password" not in service.output()
