"""
Unit tests of ``sse.tls`` and of the endpoint strings that ``sse.server``
gives daphne. TLS over sockets is tested in ``test_http_tls_e2e``.
"""

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.internet.endpoints import _parse as parse_endpoint

from sse.conf import load_config
from sse.parsing import parse_address
from sse.server import LISTEN_BACKLOG, endpoint_description
from sse.tls import TLSFiles, generate_self_signed, server_tls_files

LOCALHOST = x509.DNSName("localhost")
LOOPBACK = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))


@pytest.mark.parametrize(
    "address, expected",
    [
        ("127.0.0.1:9135", {"port": "9135", "interface": "127.0.0.1"}),
        (":9135", {"port": "9135"}),
        ("[::1]:9135", {"port": "9135", "interface": "::1"}),
    ],
)
def test_endpoint_description_tcp(address, expected):
    description = endpoint_description(parse_address(address))

    assert description.startswith("tcp:")
    assert parse_endpoint(description) == (["tcp"], {**expected, "backlog": str(LISTEN_BACKLOG)})


def test_endpoint_description_ssl_escapes_paths():
    files = TLSFiles(certificate="/etc/a:b=c/cert.pem", key="C:\\keys\\key.pem", chain="/tmp/chain.pem")

    description = endpoint_description(parse_address("127.0.0.1:9135"), files)

    assert parse_endpoint(description) == (
        ["ssl"],
        {
            "port": "9135",
            "interface": "127.0.0.1",
            "backlog": str(LISTEN_BACKLOG),
            "privateKey": "C:\\keys\\key.pem",
            "certKey": "/etc/a:b=c/cert.pem",
            "extraCertChain": "/tmp/chain.pem",
        },
    )


def test_endpoint_description_ssl_without_chain():
    files = TLSFiles(certificate="/cert.pem", key="/key.pem")

    _, options = parse_endpoint(endpoint_description(parse_address("127.0.0.1:9135"), files))

    assert "extraCertChain" not in options


@pytest.mark.parametrize(
    "host, expected",
    [
        ("127.0.0.1", [LOOPBACK, LOCALHOST]),
        ("", [LOCALHOST, LOOPBACK]),
        ("0.0.0.0", [LOCALHOST, LOOPBACK]),
        ("::", [LOCALHOST, LOOPBACK]),
        ("::1", [x509.IPAddress(ipaddress.ip_address("::1")), LOCALHOST, LOOPBACK]),
        ("localhost", [LOCALHOST, LOOPBACK]),
        ("SSE.Example.com", [x509.DNSName("sse.example.com"), LOCALHOST, LOOPBACK]),
    ],
)
def test_self_signed_names(host, expected):
    certificate, _ = generate_self_signed(host)

    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(names) == expected


def test_self_signed_certificate():
    certificate, key = generate_self_signed("127.0.0.1")
    now = datetime.datetime.now(datetime.timezone.utc)

    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    assert certificate.public_key() == key.public_key()
    assert certificate.issuer == certificate.subject
    assert certificate.not_valid_before_utc < now
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc == datetime.timedelta(days=365, minutes=5)
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert list(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    certificate.verify_directly_issued_by(certificate)


def test_tls_files_none_when_disabled():
    config = load_config(environ={"OCIS_HTTP_TLS_ENABLED": "false"})

    with server_tls_files(config) as files:
        assert files is None


def test_tls_files_self_signed_removed_on_exit(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    config = load_config(environ={"OCIS_HTTP_TLS_ENABLED": "true"})

    with server_tls_files(config) as files:
        certificate = x509.load_pem_x509_certificate(Path(files.certificate).read_bytes())
        key = serialization.load_pem_private_key(Path(files.key).read_bytes(), password=None)
        key_mode = stat.S_IMODE(Path(files.key).stat().st_mode)
        directory = Path(files.key).parent

    assert files.chain is None
    assert certificate.public_key() == key.public_key()
    assert key_mode == 0o600
    assert directory.parent == tmp_path
    assert not directory.exists()


def test_tls_files_configured_without_intermediates(tmp_path):
    certificate, key = generate_self_signed("127.0.0.1")
    certificate_path = tmp_path / "cert.pem"
    key_path = tmp_path / "key.pem"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    )
    config = load_config(
        environ={
            "OCIS_HTTP_TLS_ENABLED": "true",
            "OCIS_HTTP_TLS_CERTIFICATE": str(certificate_path),
            "OCIS_HTTP_TLS_KEY": str(key_path),
        }
    )

    with server_tls_files(config) as files:
        assert files == TLSFiles(str(certificate_path), str(key_path), None)


def test_expired_certificate_logged(tmp_path, caplog):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([])
    expired_at = datetime.datetime(2020, 1, 2, tzinfo=datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
        .not_valid_after(expired_at)
        .sign(key, hashes.SHA256())
    )
    certificate_path = tmp_path / "expired.pem"
    key_path = tmp_path / "key.pem"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    config = load_config(
        environ={
            "OCIS_HTTP_TLS_ENABLED": "true",
            "OCIS_HTTP_TLS_CERTIFICATE": str(certificate_path),
            "OCIS_HTTP_TLS_KEY": str(key_path),
        }
    )

    with server_tls_files(config):
        pass

    assert caplog.messages == [f"The TLS certificate {certificate_path} expired on {expired_at}, so clients will reject it until it is replaced"]
