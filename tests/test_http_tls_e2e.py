"""
End-to-end tests of TLS on the stream server: streams over TLS with a
provided certificate chain and with the generated self-signed
certificate, and the start-up errors of unusable certificates and keys.
"""

import asyncio
import datetime
import ipaddress
import json
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sse.wire import encode_envelope

from .conftest import token_for
from .http import request
from .service import ServiceProcess
from .test_service_e2e import run_command

OPENING = b": stream opened\n\n"


def build_certificate(subject, public_key, issuer_key, *, issuer=None, ca, names=()):
    """Return a certificate for ``public_key`` signed by ``issuer`` (a certificate), or self-signed."""
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def pem(*certificates):
    return b"".join(certificate.public_bytes(serialization.Encoding.PEM) for certificate in certificates)


def key_pem(key, encryption=None):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption or serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """
    A root CA, an intermediate CA and a server certificate for 127.0.0.1
    and localhost. The certificate file contains the server certificate and
    the intermediate, so clients that trust only the root can verify it.
    """
    directory = tmp_path_factory.mktemp("http-tls")
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = build_certificate("sse test root CA", root_key.public_key(), root_key, ca=True)
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = build_certificate("sse test intermediate CA", intermediate_key.public_key(), root_key, issuer=root, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    server = build_certificate(
        "127.0.0.1", server_key.public_key(), intermediate_key, issuer=intermediate, ca=False, names=names
    )

    paths = {
        "root": directory / "root.pem",
        "certificate": directory / "server-chain.pem",
        "key": directory / "server-key.pem",
        "leaf": directory / "server.pem",
        "other_key": directory / "other-key.pem",
        "encrypted_key": directory / "encrypted-key.pem",
    }
    paths["root"].write_bytes(pem(root))
    paths["certificate"].write_bytes(pem(server, intermediate))
    paths["leaf"].write_bytes(pem(server))
    paths["key"].write_bytes(key_pem(server_key))
    paths["other_key"].write_bytes(key_pem(ec.generate_private_key(ec.SECP256R1())))
    paths["encrypted_key"].write_bytes(key_pem(server_key, serialization.BestAvailableEncryption(b"passphrase")))
    return {name: str(path) for name, path in paths.items()}


async def stream_one_event(service, jetstream, user_id, context, host="127.0.0.1"):
    """Open a stream over TLS, publish one event and return (ssl object, event block, sequence)."""
    stream = await request(service.http_port, "/sse", [("x-access-token", token_for(user_id))], host=host, ssl=context)
    assert stream.status == 200
    assert await stream.read_block() == OPENING

    sequence = (await jetstream.publish("main-queue", encode_envelope([user_id], "secure", '{"over":"tls"}'))).seq

    block = await stream.read_event()
    ssl_object = stream.writer.get_extra_info("ssl_object")
    await stream.close()
    return ssl_object, block, sequence


async def test_stream_with_provided_certificate(nats_url, jetstream, chain, user_id):
    service = ServiceProcess(
        nats_url,
        OCIS_HTTP_TLS_ENABLED="true",
        OCIS_HTTP_TLS_CERTIFICATE=chain["certificate"],
        OCIS_HTTP_TLS_KEY=chain["key"],
    ).start()
    try:
        context = ssl.create_default_context(cafile=chain["root"])
        ssl_object, block, sequence = await stream_one_event(service, jetstream, user_id, context)
        by_name, _, _ = await stream_one_event(service, jetstream, user_id, context, host="localhost")
    finally:
        assert service.stop() == 0, service.output()

    assert block == b'id: %d\nevent: secure\ndata: {"over":"tls"}\n\n' % sequence
    assert ssl_object.version() in ("TLSv1.2", "TLSv1.3")
    assert by_name.version() in ("TLSv1.2", "TLSv1.3")
    assert f"streams on https://127.0.0.1:{service.http_port}" in service.output()
    assert f"debug server on http://127.0.0.1:{service.debug_port}" in service.output()
    assert "self-signed" not in service.output()


async def test_chain_needs_intermediate(nats_url, chain, user_id):
    """Without the intermediate in the certificate file, a client that trusts only the root fails."""
    service = ServiceProcess(
        nats_url, OCIS_HTTP_TLS_ENABLED="true", OCIS_HTTP_TLS_CERTIFICATE=chain["leaf"], OCIS_HTTP_TLS_KEY=chain["key"]
    ).start()
    try:
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
            await request(service.http_port, "/sse", ssl=ssl.create_default_context(cafile=chain["root"]))
    finally:
        assert service.stop() == 0, service.output()


async def test_plain_http_on_tls_port(nats_url, chain):
    service = ServiceProcess(
        nats_url,
        OCIS_HTTP_TLS_ENABLED="true",
        OCIS_HTTP_TLS_CERTIFICATE=chain["certificate"],
        OCIS_HTTP_TLS_KEY=chain["key"],
    ).start()
    try:
        with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
            await request(service.http_port, "/sse")
    finally:
        assert service.stop() == 0, service.output()


async def test_tls_ignored_when_disabled(nats_url, chain, user_id):
    service = ServiceProcess(
        nats_url, OCIS_HTTP_TLS_CERTIFICATE=chain["certificate"], OCIS_HTTP_TLS_KEY=chain["key"]
    ).start()
    try:
        response = await request(service.http_port, "/sse", [("x-access-token", token_for(user_id))])
        assert await response.read_block() == OPENING
        await response.close()
    finally:
        assert service.stop() == 0, service.output()

    assert response.status == 200


async def test_stream_with_self_signed_certificate(nats_url, jetstream, user_id, tmp_path):
    service = ServiceProcess(nats_url, OCIS_HTTP_TLS_ENABLED="true", TMPDIR=str(tmp_path)).start()
    try:
        (directory,) = tmp_path.glob("sse-tls-*")
        key_mode = stat.S_IMODE((directory / "key.pem").stat().st_mode)
        directory_mode = stat.S_IMODE(directory.stat().st_mode)

        served = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", service.http_port))
        context = ssl.create_default_context(cadata=served)
        ssl_object, block, sequence = await stream_one_event(service, jetstream, user_id, context)
        await stream_one_event(service, jetstream, user_id, context, host="localhost")
    finally:
        assert service.stop() == 0, service.output()

    assert block == b'id: %d\nevent: secure\ndata: {"over":"tls"}\n\n' % sequence
    assert ssl_object.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(served)
    assert key_mode == 0o600
    assert directory_mode == 0o700
    assert not directory.exists()

    certificate = x509.load_pem_x509_certificate(served.encode())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
    assert certificate.public_key().curve.name == "secp256r1"
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime == datetime.timedelta(days=365, minutes=5)

    output = service.output()
    (warning,) = [json.loads(line) for line in output.splitlines() if '"logger": "sse.tls"' in line and '"warn"' in line]
    assert warning["message"].startswith("OCIS_HTTP_TLS_ENABLED is true but OCIS_HTTP_TLS_CERTIFICATE is not set")
    assert "Certificate for 127.0.0.1, localhost, valid until " in output
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex(":").upper()
    assert f"SHA-256 fingerprint {fingerprint}" in output


async def test_self_signed_unverified_client(nats_url, jetstream, user_id):
    service = ServiceProcess(nats_url, OCIS_HTTP_TLS_ENABLED="true").start()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, block, sequence = await stream_one_event(service, jetstream, user_id, context)
        with pytest.raises(ssl.SSLCertVerificationError, match="self-signed certificate"):
            await request(service.http_port, "/sse", ssl=ssl.create_default_context())
    finally:
        assert service.stop() == 0, service.output()

    assert block == b'id: %d\nevent: secure\ndata: {"over":"tls"}\n\n' % sequence


def start_with(nats_url, **environment):
    return run_command(
        "runsse", SSE_EVENTS_ENDPOINT=nats_url, SSE_JWT_SECRET="secret", OCIS_HTTP_TLS_ENABLED="true", **environment
    )


def test_missing_certificate_stops_startup(nats_url, chain, tmp_path):
    missing = str(tmp_path / "missing.pem")

    result = start_with(nats_url, OCIS_HTTP_TLS_CERTIFICATE=missing, OCIS_HTTP_TLS_KEY=chain["key"])

    assert result.returncode == 1
    assert f"OCIS_HTTP_TLS_CERTIFICATE={missing!r} is invalid: expected the path of an existing file" in result.stderr


def test_missing_key_stops_startup(nats_url, chain, tmp_path):
    missing = str(tmp_path / "missing-key.pem")

    result = start_with(nats_url, OCIS_HTTP_TLS_CERTIFICATE=chain["certificate"], OCIS_HTTP_TLS_KEY=missing)

    assert result.returncode == 1
    assert f"OCIS_HTTP_TLS_KEY={missing!r} is invalid: expected the path of an existing file" in result.stderr


def test_certificate_without_key_stops_startup(nats_url, chain):
    result = start_with(nats_url, OCIS_HTTP_TLS_CERTIFICATE=chain["certificate"])

    assert result.returncode == 1
    assert "OCIS_HTTP_TLS_KEY='' is invalid: OCIS_HTTP_TLS_CERTIFICATE and OCIS_HTTP_TLS_KEY must be set together" in result.stderr


def test_key_of_other_certificate_stops_startup(nats_url, chain):
    result = start_with(nats_url, OCIS_HTTP_TLS_CERTIFICATE=chain["certificate"], OCIS_HTTP_TLS_KEY=chain["other_key"])

    assert result.returncode == 1
    assert (
        f"OCIS_HTTP_TLS_KEY={chain['other_key']!r} is invalid: "
        f"the key does not belong to the first certificate in {chain['certificate']}"
    ) in result.stderr


def test_encrypted_key_stops_startup(nats_url, chain):
    result = start_with(nats_url, OCIS_HTTP_TLS_CERTIFICATE=chain["certificate"], OCIS_HTTP_TLS_KEY=chain["encrypted_key"])

    assert result.returncode == 1
    assert (
        f"OCIS_HTTP_TLS_KEY={chain['encrypted_key']!r} is invalid: "
        "expected a PEM key without a passphrase, but the key is encrypted"
    ) in result.stderr


def test_certificate_not_pem_stops_startup(nats_url, chain, tmp_path):
    not_pem = tmp_path / "not-a-certificate.pem"
    not_pem.write_text("this is not a certificate\n")

    result = start_with(nats_url, OCIS_HTTP_TLS_CERTIFICATE=str(not_pem), OCIS_HTTP_TLS_KEY=chain["key"])

    assert result.returncode == 1
    assert (
        f"OCIS_HTTP_TLS_CERTIFICATE={str(not_pem)!r} is invalid: expected a PEM file with the server certificate"
    ) in result.stderr


def test_key_not_pem_stops_startup(nats_url, chain):
    result = start_with(nats_url, OCIS_HTTP_TLS_CERTIFICATE=chain["certificate"], OCIS_HTTP_TLS_KEY=chain["certificate"])

    assert result.returncode == 1
    assert (
        f"OCIS_HTTP_TLS_KEY={chain['certificate']!r} is invalid: expected a PEM file with an RSA, EC or Ed25519 private key"
    ) in result.stderr
