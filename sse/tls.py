"""
TLS for the stream server.

With ``OCIS_HTTP_TLS_ENABLED``, the streams on ``SSE_HTTP_ADDR`` are served
over TLS with the certificate and key in ``OCIS_HTTP_TLS_CERTIFICATE`` and
``OCIS_HTTP_TLS_KEY``. Without them, as in oCIS, a self-signed certificate
is generated at every start, so clients have to trust that certificate or
skip verification. The debug server always stays plain HTTP.
"""

import contextlib
import datetime
import ipaddress
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .exceptions import ConfigurationError

__all__ = ["TLSFiles", "generate_self_signed", "server_tls_files"]

logger = logging.getLogger(__name__)

SELF_SIGNED_VALIDITY = datetime.timedelta(days=365)

# Starting the validity a little in the past keeps clients whose clock is
# slightly behind from rejecting a certificate generated a moment ago.
CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class TLSFiles:
    """The PEM files that the stream server serves TLS with."""

    certificate: str
    key: str
    # The intermediate CA certificates sent after the server certificate,
    # or None when there are none.
    chain: str | None = None


@contextlib.contextmanager
def server_tls_files(config):
    """
    Yield the ``TLSFiles`` of the stream server, or ``None`` when TLS is off.

    Files written here (the self-signed certificate and key, or the
    intermediate certificates) live in a private temporary directory that
    is removed when the context exits. Raises ``ConfigurationError`` for a
    certificate or key that cannot be used.
    """
    if not config.http_tls_enabled:
        yield None
        return

    with tempfile.TemporaryDirectory(prefix="sse-tls-") as directory:
        if config.http_tls_certificate:
            yield _configured_files(config, Path(directory))
        else:
            yield _self_signed_files(config, Path(directory))


def _configured_files(config, directory):
    certificates = _load_certificates(config)
    key = _load_key(config)
    if certificates[0].public_key() != key.public_key():
        raise ConfigurationError(
            config.origin_of("http_tls_key"),
            config.http_tls_key,
            f"the key does not belong to the first certificate in {config.http_tls_certificate}",
        )

    expires = certificates[0].not_valid_after_utc
    if expires < datetime.datetime.now(datetime.timezone.utc):
        logger.warning(
            "The TLS certificate %s expired on %s, so clients will reject it until it is replaced",
            config.http_tls_certificate,
            expires,
        )

    # Twisted's ssl endpoint serves only the first certificate of the
    # certificate file, so the intermediates go to a separate chain file.
    chain = None
    if len(certificates) > 1:
        chain = directory / "chain.pem"
        chain.write_bytes(b"".join(certificate.public_bytes(serialization.Encoding.PEM) for certificate in certificates[1:]))
    return TLSFiles(config.http_tls_certificate, config.http_tls_key, str(chain) if chain else None)


def _load_certificates(config):
    path = config.http_tls_certificate
    try:
        return x509.load_pem_x509_certificates(Path(path).read_bytes())
    except ValueError:
        raise ConfigurationError(
            config.origin_of("http_tls_certificate"),
            path,
            "expected a PEM file with the server certificate, optionally followed by intermediate CA certificates",
        ) from None


def _load_key(config):
    path = config.http_tls_key
    origin = config.origin_of("http_tls_key")
    try:
        return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except TypeError:
        # cryptography raises TypeError for a key that needs a password.
        raise ConfigurationError(origin, path, "expected a PEM key without a passphrase, but the key is encrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigurationError(origin, path, "expected a PEM file with an RSA, EC or Ed25519 private key") from None


def _self_signed_files(config, directory):
    certificate, key = generate_self_signed(config.http_addr.host)
    files = TLSFiles(str(directory / "certificate.pem"), str(directory / "key.pem"))

    Path(files.certificate).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    descriptor = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(descriptor, "wb") as key_file:
        key_file.write(key_bytes)

    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    logger.warning(
        "OCIS_HTTP_TLS_ENABLED is true but OCIS_HTTP_TLS_CERTIFICATE is not set, so the streams use a "
        "self-signed certificate that clients do not trust; set OCIS_HTTP_TLS_CERTIFICATE and "
        "OCIS_HTTP_TLS_KEY for production. Certificate for %s, valid until %s, SHA-256 fingerprint %s",
        ", ".join(str(name.value) for name in names),
        certificate.not_valid_after_utc.isoformat(),
        certificate.fingerprint(hashes.SHA256()).hex(":").upper(),
    )
    return files


def generate_self_signed(host):
    """
    Return a new self-signed ECDSA P-256 certificate and its private key.

    The certificate is valid for one year, for server authentication, and
    names ``host`` (unless it is empty or an unspecified address such as
    ``0.0.0.0``), ``localhost`` and ``127.0.0.1``.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sse self-signed certificate")])
    now = datetime.datetime.now(datetime.timezone.utc)
    subject_key = x509.SubjectKeyIdentifier.from_public_key(key.public_key())

    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + SELF_SIGNED_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_subject_alternative_names(host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(subject_key, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(subject_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def _subject_alternative_names(host):
    names = []
    for value in (host, "localhost", "127.0.0.1"):
        name = _general_name(value)
        if name is not None and name not in names:
            names.append(name)
    return names


def _general_name(host):
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return x509.DNSName(host.lower())
    # A wildcard bind address such as 0.0.0.0 is no address a client
    # connects to, so it has no place in the certificate.
    return None if address.is_unspecified else x509.IPAddress(address)
