"""A throw-away certificate authority built from the Python standard library alone.

The ``demo`` command uses it to serve HTTPS on loopback where neither ``cryptography`` nor an
``openssl`` binary can be assumed. Keys are ECDSA over NIST P-256 in plain integer arithmetic,
not hardened against timing side channels: fit for a short-lived loopback demo, nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

# NIST P-256 (SEC 2, 2.4.2): y^2 = x^3 - 3x + b over GF(_P); base point (_GX, _GY) of order _N.
_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
_GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5

# Jacobian coordinates: (X, Y, Z) is the affine point (X/Z^2, Y/Z^3); Z == 0 is infinity.
_Point = tuple[int, int, int]

_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_PRIME256V1 = "1.2.840.10045.3.1.7"
_ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"
_ORGANIZATION = "2.5.4.10"
_COMMON_NAME = "2.5.4.3"
_SUBJECT_KEY_ID = "2.5.29.14"
_KEY_USAGE = "2.5.29.15"
_SUBJECT_ALT_NAME = "2.5.29.17"
_BASIC_CONSTRAINTS = "2.5.29.19"
_AUTHORITY_KEY_ID = "2.5.29.35"
_EXTENDED_KEY_USAGE = "2.5.29.37"
_SERVER_AUTH = "1.3.6.1.5.5.7.3.1"

_TRUE = b"\x01\x01\xff"  # DER BOOLEAN TRUE


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, both PEM text."""

    cert_pem: str
    key_pem: str  # SEC1 "EC PRIVATE KEY"


class ThrowawayCA:
    """A new self-signed CA whose key lives only in this object."""

    def __init__(self, name: str = "cmem-adapter demo CA") -> None:
        self._key, public = _new_key()
        self._name = _name(name)
        self._key_id = _key_id(public)
        extensions = [
            _extension(_BASIC_CONSTRAINTS, _sequence(_TRUE), critical=True),
            # keyUsage bits 5 and 6: keyCertSign, cRLSign
            _extension(_KEY_USAGE, _bit_string(b"\x06", unused=1), critical=True),
            _extension(_SUBJECT_KEY_ID, _octets(self._key_id)),
        ]
        self._cert_pem = _certificate(self._name, self._name, public, self._key, extensions)

    @property
    def cert_pem(self) -> str:
        """The CA certificate as PEM text, for clients to trust."""
        return self._cert_pem

    def issue(self, hosts: Sequence[str]) -> Issued:
        """Returns a server certificate for `hosts` (DNS names and/or IP addresses, e.g.
        ["localhost", "127.0.0.1", "::1"]) signed by this CA; its subject CN is the first host.
        """
        if not hosts:
            raise ValueError("issue() needs at least one host")
        key, public = _new_key()
        extensions = [
            _extension(_BASIC_CONSTRAINTS, _sequence(), critical=True),
            # keyUsage bit 0: digitalSignature
            _extension(_KEY_USAGE, _bit_string(b"\x80", unused=7), critical=True),
            _extension(_EXTENDED_KEY_USAGE, _sequence(_oid(_SERVER_AUTH))),
            _extension(_SUBJECT_ALT_NAME, _sequence(*map(_general_name, hosts))),
            _extension(_SUBJECT_KEY_ID, _octets(_key_id(public))),
            _extension(_AUTHORITY_KEY_ID, _sequence(_tlv(0x80, self._key_id))),
        ]
        cert_pem = _certificate(_name(hosts[0]), self._name, public, self._key, extensions)
        key_der = _sequence(
            _integer(1),
            _octets(key.to_bytes(32, "big")),
            _tlv(0xA0, _oid(_PRIME256V1)),
            _tlv(0xA1, _bit_string(public)),
        )
        return Issued(cert_pem, _pem("EC PRIVATE KEY", key_der))


# --- X.509 ------------------------------------------------------------------------------------


def _certificate(
    subject: bytes, issuer: bytes, public: bytes, signing_key: int, extensions: list[bytes]
) -> str:
    """Returns a PEM X.509 v3 certificate valid from an hour ago for two days."""
    now = time.time()
    algorithm = _sequence(_oid(_ECDSA_WITH_SHA256))
    tbs = _sequence(
        _tlv(0xA0, _integer(2)),  # version v3
        _integer(1 + secrets.randbelow(2**128 - 1)),  # serial number
        algorithm,
        issuer,
        _sequence(_utc_time(now - 3600), _utc_time(now + 2 * 86400)),
        subject,
        _sequence(_sequence(_oid(_EC_PUBLIC_KEY), _oid(_PRIME256V1)), _bit_string(public)),
        _tlv(0xA3, _sequence(*extensions)),
    )
    return _pem("CERTIFICATE", _sequence(tbs, algorithm, _bit_string(_sign(signing_key, tbs))))


def _name(common_name: str) -> bytes:
    """Returns the DER Name O=cmem-adapter, CN=`common_name`."""
    attributes = ((_ORGANIZATION, "cmem-adapter"), (_COMMON_NAME, common_name))
    return _sequence(
        *(_tlv(0x31, _sequence(_oid(oid), _tlv(0x0C, value.encode()))) for oid, value in attributes)
    )


def _extension(oid: str, value: bytes, critical: bool = False) -> bytes:
    """Returns a DER Extension; DER omits `critical` when it is the default FALSE."""
    return _sequence(_oid(oid), _TRUE if critical else b"", _octets(value))


def _general_name(host: str) -> bytes:
    """Returns an iPAddress GeneralName for an IP address, else a dNSName."""
    try:
        return _tlv(0x87, ipaddress.ip_address(host).packed)
    except ValueError:
        return _tlv(0x82, host.encode("ascii"))


def _key_id(public: bytes) -> bytes:
    """Returns the key identifier of a public key (RFC 7093 method 1: truncated SHA-256)."""
    return hashlib.sha256(public).digest()[:20]


def _pem(label: str, der: bytes) -> str:
    """Returns `der` as PEM text with 64-character lines."""
    text = base64.b64encode(der).decode("ascii")
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""])


# --- DER --------------------------------------------------------------------------------------


def _tlv(tag: int, *parts: bytes) -> bytes:
    """Returns a DER tag-length-value with the concatenated `parts` as value."""
    value = b"".join(parts)
    if len(value) < 0x80:
        length = bytes([len(value)])
    else:
        size = (len(value).bit_length() + 7) // 8
        length = bytes([0x80 | size]) + len(value).to_bytes(size, "big")
    return bytes([tag]) + length + value


def _sequence(*parts: bytes) -> bytes:
    """Returns a DER SEQUENCE of `parts`."""
    return _tlv(0x30, *parts)


def _integer(value: int) -> bytes:
    """Returns a DER INTEGER for `value` >= 0: minimal, with a 0 byte if the high bit is set."""
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _bit_string(data: bytes, unused: int = 0) -> bytes:
    """Returns a DER BIT STRING whose last byte has `unused` trailing padding bits."""
    return _tlv(0x03, bytes([unused]), data)


def _octets(data: bytes) -> bytes:
    """Returns a DER OCTET STRING."""
    return _tlv(0x04, data)


def _utc_time(seconds: float) -> bytes:
    """Returns a DER UTCTime for a POSIX timestamp."""
    return _tlv(0x17, time.strftime("%y%m%d%H%M%SZ", time.gmtime(seconds)).encode("ascii"))


def _oid(dotted: str) -> bytes:
    """Returns a DER OBJECT IDENTIFIER for a dotted string such as "2.5.4.3"."""
    first, second, *rest = (int(arc) for arc in dotted.split("."))
    value = b""
    for arc in (40 * first + second, *rest):
        chunk = [arc & 0x7F]
        while arc := arc >> 7:
            chunk.insert(0, 0x80 | (arc & 0x7F))
        value += bytes(chunk)
    return _tlv(0x06, value)


# --- ECDSA over P-256 -------------------------------------------------------------------------


def _new_key() -> tuple[int, bytes]:
    """Returns a fresh private scalar and its public point in uncompressed SEC1 form."""
    secret = 1 + secrets.randbelow(_N - 1)
    x, y = _base_multiple(secret)
    return secret, b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def _sign(secret: int, message: bytes) -> bytes:
    """Returns the DER ECDSA-with-SHA256 signature of `message` by private scalar `secret`."""
    e = int.from_bytes(hashlib.sha256(message).digest(), "big")
    k = 1 + secrets.randbelow(_N - 1)
    r = _base_multiple(k)[0] % _N
    s = pow(k, -1, _N) * (e + r * secret) % _N
    return _sequence(_integer(r), _integer(s))  # r or s is 0 with odds ~2**-256; no retry


def _base_multiple(k: int) -> tuple[int, int]:
    """Returns the affine point k·G for 0 < k < _N, by left-to-right double-and-add."""
    point: _Point = (1, 1, 0)
    for bit in bin(k)[2:]:
        point = _double(point)
        if bit == "1":
            point = _add_base(point)
    x, y, z = point
    z_inv = pow(z, -1, _P)
    return x * z_inv**2 % _P, y * z_inv**3 % _P


def _double(point: _Point) -> _Point:
    """Returns 2·point ("dbl-2001-b", valid because the curve has a = -3)."""
    x, y, z = point
    delta, gamma = z * z % _P, y * y % _P
    beta = x * gamma % _P
    alpha = 3 * (x - delta) * (x + delta) % _P
    x3 = (alpha * alpha - 8 * beta) % _P
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % _P
    z3 = ((y + z) ** 2 - gamma - delta) % _P
    return x3, y3, z3


def _add_base(point: _Point) -> _Point:
    """Returns point + G (mixed addition). _base_multiple only passes 2m·G with 2m + 1 < _N:
    infinity when m = 0, never ±G, so the formula's doubling case cannot arise."""
    x1, y1, z1 = point
    if z1 == 0:
        return _GX, _GY, 1
    zz = z1 * z1 % _P
    h = (_GX * zz - x1) % _P
    r = (_GY * zz * z1 - y1) % _P
    hh = h * h % _P
    hhh = h * hh % _P
    x3 = (r * r - hhh - 2 * x1 * hh) % _P
    y3 = (r * (x1 * hh - x3) - y1 * hhh) % _P
    return x3, y3, z1 * h % _P
