"""The stdlib-only throw-away CA: real TLS handshakes, and the certificates' contents."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from cmem_adapter._throwaway_ca import Issued, ThrowawayCA

HOSTS = ["localhost", "127.0.0.1", "::1"]
E = TypeVar("E", bound=x509.ExtensionType)


@pytest.fixture(scope="module")
def ca() -> ThrowawayCA:
    return ThrowawayCA()


@pytest.fixture(scope="module")
def issued(ca: ThrowawayCA) -> Issued:
    return ca.issue(HOSTS)


@pytest.fixture(scope="module")
def port(issued: Issued, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A loopback TLS server presenting `issued`; it answers b"ok" after each handshake."""
    folder = tmp_path_factory.mktemp("server")
    (folder / "cert.pem").write_text(issued.cert_pem)
    (folder / "key.pem").write_text(issued.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    stop = threading.Event()

    def serve(listener: socket.socket) -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            # OSError includes ssl.SSLError: the client refused our certificate.
            with (
                conn,
                contextlib.suppress(OSError),
                context.wrap_socket(conn, server_side=True) as tls,
            ):
                tls.sendall(b"ok")

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.05)
        thread = threading.Thread(target=serve, args=(listener,), daemon=True)
        thread.start()
        yield listener.getsockname()[1]
        stop.set()
        thread.join(timeout=5)


def handshake(port: int, trusted: str, server_hostname: str, strict: bool) -> bytes:
    """Connects to 127.0.0.1:`port` trusting only the CA PEM `trusted`; returns what was read."""
    context = ssl.create_default_context(cadata=trusted)
    if strict:
        context.verify_flags |= ssl.VERIFY_X509_STRICT
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        return tls.recv(2)


@pytest.mark.parametrize("strict", [False, True], ids=["default", "x509-strict"])
@pytest.mark.parametrize("server_hostname", HOSTS)
def test_handshake_succeeds_with_the_issuing_ca(
    ca: ThrowawayCA, port: int, server_hostname: str, strict: bool
) -> None:
    assert handshake(port, ca.cert_pem, server_hostname, strict) == b"ok"


@pytest.mark.parametrize("strict", [False, True], ids=["default", "x509-strict"])
def test_handshake_is_refused_by_a_client_trusting_another_ca(port: int, strict: bool) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        handshake(port, ThrowawayCA().cert_pem, "localhost", strict)


@pytest.mark.parametrize("server_hostname", ["example.com", "127.0.0.2", "::2"])
def test_handshake_is_refused_for_a_host_not_in_the_sans(
    ca: ThrowawayCA, port: int, server_hostname: str
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(port, ca.cert_pem, server_hostname, strict=True)


def extension(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


def check_common_fields(cert: x509.Certificate, common_name: str) -> None:
    assert cert.version is x509.Version.v3
    assert 0 < cert.serial_number < 2**128
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == common_name
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "cmem-adapter"
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert isinstance(public_key.curve, ec.SECP256R1)
    now = time.time()
    assert abs(cert.not_valid_before_utc.timestamp() - (now - 3600)) < 60
    assert abs(cert.not_valid_after_utc.timestamp() - (now + 2 * 86400)) < 60


def test_ca_certificate(ca: ThrowawayCA) -> None:
    cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    check_common_fields(cert, "cmem-adapter demo CA")
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)

    basic = extension(cert, x509.BasicConstraints)
    assert basic.critical
    assert basic.value == x509.BasicConstraints(ca=True, path_length=None)
    usage = extension(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    assert not extension(cert, x509.SubjectKeyIdentifier).critical
    assert len(cert.extensions) == 3


def test_server_certificate(ca: ThrowawayCA, issued: Issued) -> None:
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    cert = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    check_common_fields(cert, "localhost")
    assert cert.issuer == ca_cert.subject
    cert.verify_directly_issued_by(ca_cert)

    basic = extension(cert, x509.BasicConstraints)
    assert basic.critical
    assert basic.value == x509.BasicConstraints(ca=False, path_length=None)
    usage = extension(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not (usage.value.key_cert_sign or usage.value.crl_sign)
    eku = extension(cert, x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = extension(cert, x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    ski = extension(cert, x509.SubjectKeyIdentifier)
    aki = extension(cert, x509.AuthorityKeyIdentifier)
    ca_ski = extension(ca_cert, x509.SubjectKeyIdentifier)
    assert not ski.critical and not aki.critical
    assert aki.value.key_identifier == ca_ski.value.digest != ski.value.digest
    assert len(cert.extensions) == 6


def test_private_key_matches_the_certificate(issued: Issued) -> None:
    key = serialization.load_pem_private_key(issued.key_pem.encode(), password=None)
    cert = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == cert.public_key()


def test_each_certificate_is_new(ca: ThrowawayCA) -> None:
    first = x509.load_pem_x509_certificate(ca.issue(["localhost"]).cert_pem.encode())
    second = x509.load_pem_x509_certificate(ca.issue(["localhost"]).cert_pem.encode())
    assert first.serial_number != second.serial_number
    assert first.public_key() != second.public_key()
    assert first.signature != second.signature


def test_issue_needs_a_host(ca: ThrowawayCA) -> None:
    with pytest.raises(ValueError, match="at least one host"):
        ca.issue([])
