"""What a TLS server presents, looked at without trusting it, and which trust source accepts it.

Used by the command line (``check``, ``fetch-chain``). A probe connects as requests would,
directly or through the environment's ``http://`` or ``https://`` proxy with CONNECT, and does
the TLS handshake itself (over memory buffers, so the same code runs inside a TLS tunnel).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

from requests.exceptions import RequestException
from requests.models import PreparedRequest
from requests.utils import get_environ_proxies, prepend_scheme_if_needed, select_proxy

from .adapter import without_credentials
from .contexts import live_context
from .errors import ConfigError, causes, redact
from .policy import TrustPolicy

log = logging.getLogger("cmem_adapter")

TIMEOUT = 10.0
"""Seconds to wait for a connection, the proxy and each handshake step."""

MAX_PROXY_ANSWER = 64 * 1024
"""The most bytes read from a proxy's answer to CONNECT before giving up on it."""

PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")
"""The proxy URL schemes requests can use (socks with PySocks installed)."""

_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}\Z")

_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
}

# OpenSSL's X509_V_ERR_* codes (x509_vfy.h), as SSLCertVerificationError.verify_code gives them.
_KINDS = {
    2: "unknown issuer",  # unable to get issuer certificate
    20: "unknown issuer",  # unable to get local issuer certificate
    21: "unknown issuer",  # unable to verify the first certificate
    18: "self-signed",  # self-signed certificate
    19: "self-signed",  # self-signed certificate in certificate chain
    9: "not yet valid",
    10: "expired",
    62: "name mismatch",  # hostname
    64: "name mismatch",  # IP address
    # X509_V_ERR_INVALID_CA (79) to _EC_KEY_EXPLICIT_PARAMS (94): the checks of
    # VERIFY_X509_STRICT, on by default from Python 3.13 (missing key identifiers, a
    # basicConstraints not marked critical, ...).
    **dict.fromkeys(range(79, 95), "strict X.509"),
}


class ProbeError(Exception):
    """Raised when the server cannot be reached or the handshake fails for another reason."""


@dataclass(frozen=True)
class Presented:
    """One certificate the server sent, as read from the handshake (not verified)."""

    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    names: tuple[str, ...]
    """The DNS names and IP addresses it is for (subjectAltName)."""
    sha256: str
    """The SHA-256 fingerprint of its DER form, colon-separated hex."""
    pem: str
    dns_names: tuple[str, ...] = ()
    """The DNS names among `names`."""
    ip_addresses: tuple[str, ...] = ()
    """The IP addresses among `names`."""

    @property
    def self_signed(self) -> bool:
        """True when it names itself as its issuer: a root CA, or a server's own certificate."""
        return self.subject == self.issuer

    def expired(self, now: datetime) -> bool:
        """True when it is no longer valid at `now`."""
        return self.not_after < now

    def early(self, now: datetime) -> bool:
        """True when it is not valid yet at `now`."""
        return self.not_before > now

    def is_for(self, host: str) -> bool | None:
        """Returns whether a client connecting to `host` would accept its names, as OpenSSL
        matches them for Python (subjectAltName; a wildcard stands for one whole label).

        None when that cannot be told from the names: a host name and no DNS names, where
        OpenSSL falls back to the subject's common name.
        """
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            address = None
        if address is not None:  # an IP address matches IP addresses only, never a CN
            return any(_same_address(address, value) for value in self.ip_addresses)
        if not self.dns_names:
            return None
        return any(_name_matches(name, host) for name in self.dns_names)


@dataclass(frozen=True)
class Refusal:
    """Why a trust source refused a server, in OpenSSL's words and as one of a few kinds."""

    kind: str
    """One of "unknown issuer", "self-signed", "expired", "not yet valid", "name mismatch",
    "strict X.509", "unavailable" (the source cannot be built here) and "other"."""
    message: str

    @property
    def untrusted(self) -> bool:
        """True when trusting another CA would fix it (unlike an expired or misnamed one)."""
        return self.kind in ("unknown issuer", "self-signed")


@dataclass(frozen=True)
class Route:
    """Where a probe connects: the server's host and port, directly or through a proxy."""

    host: str
    port: int
    proxy: str | None = None
    """An ``http://`` or ``https://`` proxy URL, tunnelled through with CONNECT."""
    proxy_context: ssl.SSLContext | None = None
    """Verifies an ``https://`` proxy, as the adapter's proxy policy would."""

    @classmethod
    def to(cls, url: str, proxy_policy: TrustPolicy) -> Route:
        """Returns the route requests would take to `url`, with the environment's proxy if any.

        An ``https://`` proxy is verified by `proxy_policy`. Raises `ValueError`, saying why,
        for anything but a valid ``https://`` URL with a host, and for a proxy requests could
        not use.
        """
        host, port = https_address(url)
        proxy = environ_proxy(url)
        return cls(host, port, proxy, _checking_context(proxy_policy))

    @property
    def to_proxy(self) -> Route | None:
        """Returns the route to the ``https://`` proxy itself, to look at its certificate."""
        if self.proxy is None or urlsplit(self.proxy).scheme != "https":
            return None
        return Route(*_proxy_address(self.proxy))

    @property
    def proxy_shown(self) -> str:
        """Returns the proxy URL without credentials, for messages ("" for none)."""
        return without_credentials(self.proxy) if self.proxy else ""

    def __str__(self) -> str:
        via = f" through the proxy {self.proxy_shown}" if self.proxy else ""
        return f"{self.host}:{self.port}{via}"


def https_address(url: str) -> tuple[str, int]:
    """Returns the host, as requests connects to it (IDNA-encoded), and port of `url`.

    Raises `ValueError`, saying why, for anything but a valid ``https://`` URL with a host.
    """
    if "://" not in url:
        raise ValueError(f"URL {url!r} has no scheme. Fix: {_did_you_mean(url)}")
    prepared = PreparedRequest()
    try:
        prepared.prepare_url(url, None)
        parts = urlsplit(prepared.url or "")
        host, port = parts.hostname or "", parts.port or 443
    except (RequestException, ValueError) as e:
        raise ValueError(f"URL {url!r} is not valid ({e})") from None
    if parts.scheme == "http":
        raise ValueError(
            f"URL {url!r}: http:// involves no TLS, so there is no certificate to check (only"
            " the hop to an https:// proxy has one). Fix: check the server's https:// URL"
        )
    if parts.scheme != "https" or not host:
        raise ValueError(f"URL {url!r} is not an https:// URL with a host")
    if ":" in host:  # an IPv6 address
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"URL {url!r}: {host!r} is not a valid IPv6 address") from None
    elif not all(_LABEL.match(label) for label in host.removesuffix(".").split(".")):
        raise ValueError(
            f"URL {url!r}: {host!r} is not a valid host name (each part between dots: 1 to 63"
            " letters, digits, hyphens or underscores)"
        )
    return host, port


def _did_you_mean(url: str) -> str:
    """Returns "use https://URL" when that is a valid URL, else how an https:// URL looks."""
    guess = "https://" + url + ("" if "/" in url else "/")
    try:
        if url[:1].isalnum() or url[:1] == "[":  # a host first, not a path
            https_address(guess)
            return f"use {guess}"
    except ValueError:
        pass
    return "use the server's https:// URL, e.g. https://cmem.example.com/"


def environ_proxy(url: str) -> str | None:
    """Returns the proxy requests would take for `url` from the environment, or None.

    Raises `ValueError`, naming the proxy without its password, for one requests cannot use.
    """
    proxy: str | None = select_proxy(url, get_environ_proxies(url))
    if not proxy:
        return None
    try:
        proxy = prepend_scheme_if_needed(proxy, "http")
        parts = urlsplit(proxy)
        scheme, host, _ = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError as e:
        problem = f"not a valid URL ({e})"
    else:
        if scheme in PROXY_SCHEMES and host:
            return proxy
        schemes = ", ".join(f"{name}://" for name in PROXY_SCHEMES)
        problem = f"not a proxy URL with a host and one of the schemes {schemes}"
    raise ValueError(
        redact(
            f"the proxy {proxy!r} (from the environment) for {url!r} is {problem}. Fix: correct"
            " HTTPS_PROXY/https_proxy or ALL_PROXY/all_proxy, or exclude the host with NO_PROXY"
        )
    )


def printable(text: str) -> str:
    """Returns `text` with every character that is not printable as a visible escape.

    Control characters (``\\n``, ``\\r``, ESC, C1, DEL), format characters such as bidi
    overrides (``\\u202e``), line separators and the like become ``\\x1b``, ``\\u202e``, ...
    so that text from a server cannot move the cursor, rewrite a line or reorder it.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def fetch_chain(route: Route, timeout: float = TIMEOUT) -> list[Presented]:
    """Returns every certificate the server presents, leaf first, without verifying any.

    Raises `ProbeError` when the server cannot be reached or the handshake fails.
    """
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    return _handshake(route, unverified, timeout)


def verify(route: Route, policy: TrustPolicy, timeout: float = TIMEOUT) -> Refusal | None:
    """Returns None when `policy` verifies the server at `route`, else why it refuses it.

    Raises `ProbeError` when the server cannot be reached or the handshake fails otherwise.
    """
    try:
        _handshake(route, _checking_context(policy), timeout)
    except ssl.SSLCertVerificationError as e:
        return Refusal(_KINDS.get(e.verify_code, "other"), printable(e.verify_message))
    return None


def other_sources(route: Route, timeout: float = TIMEOUT) -> dict[str, Refusal | None]:
    """Returns, for the ``certifi`` and ``system`` sources, None if it verifies the server.

    Raises `ProbeError` when the server cannot be reached or the handshake fails otherwise.
    """
    # Building them logs which source each trusts: say why, lest it read as the one chosen.
    log.debug("Checking which other trust sources would accept the server (for the explanation)")
    verdicts: dict[str, Refusal | None] = {}
    for name, make in (("certifi", TrustPolicy.certifi), ("system", TrustPolicy.system)):
        try:
            policy = make()
        except ConfigError as e:
            verdicts[name] = Refusal("unavailable", str(e))
        else:
            verdicts[name] = verify(route, policy, timeout)
    return verdicts


def plain(error: BaseException) -> str:
    """Returns what went wrong with a connection in a few words, e.g. "connection refused".

    Printable (see `printable`): the words may come from the server or the proxy.
    """
    found = causes(error)
    for kind, words in (
        (socket.gaierror, "host name not found"),
        (ConnectionRefusedError, "connection refused"),
        (TimeoutError, "timed out"),
        (ConnectionResetError, "connection reset"),
    ):
        if any(isinstance(e, kind) for e in found):
            return words
    return printable(str(found[-1]) or type(found[-1]).__name__)


def _checking_context(policy: TrustPolicy) -> ssl.SSLContext:
    # The policy's context that matches host names itself. On urllib3 1.26 the one for origins
    # leaves that to urllib3 (contexts.URLLIB3_MATCHES_NAMES), and a probe has no urllib3.
    return live_context(policy, proxy_hop=True).current()


def _handshake(route: Route, context: ssl.SSLContext, timeout: float) -> list[Presented]:
    with _stream(route, timeout) as (stream, early):
        try:
            tls = _tls(stream, early, context, route.host)
        except ssl.SSLCertVerificationError:
            raise
        except OSError as e:
            raise ProbeError(f"TLS handshake with {route} failed: {plain(e)}") from None
    # SSLObject.get_unverified_chain() (public since Python 3.13) gives DER bytes only; the
    # _ssl.Certificate objects behind it (3.10+) also read subject, issuer, dates and names,
    # which spares a DER parser. truststore relies on the same private method.
    chain = tls._sslobj.get_unverified_chain()  # type: ignore[attr-defined]
    return [_presented(cert) for cert in chain or ()]


@contextlib.contextmanager
def _stream(route: Route, timeout: float) -> Iterator[tuple[socket.socket, bytes]]:
    """Yields a byte stream to the server, and bytes the proxy sent past its answer."""
    if route.proxy is None:
        with _dial(route.host, route.port, timeout) as sock:
            yield sock, b""
        return
    scheme = urlsplit(route.proxy).scheme
    if scheme not in ("http", "https"):
        raise ProbeError(
            f"cannot look through the proxy {route.proxy_shown}: only http:// and https://"
            " proxies are supported here"
        )
    host, port = _proxy_address(route.proxy)
    with _dial(host, port, timeout) as sock:
        stream = sock
        if scheme == "https":
            assert route.proxy_context is not None
            try:
                stream = route.proxy_context.wrap_socket(sock, server_hostname=host)
            except OSError as e:
                raise ProbeError(
                    f"TLS to the proxy {route.proxy_shown} failed: {plain(e)}"
                ) from None
        with stream:
            yield stream, _tunnel(stream, route)


def _proxy_address(proxy: str) -> tuple[str, int]:
    parts = urlsplit(proxy)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _dial(host: str, port: int, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout)
    except OSError as e:
        raise ProbeError(f"cannot connect to {host}:{port}: {plain(e)}") from None


def _tunnel(stream: socket.socket, route: Route) -> bytes:
    """Asks the proxy for a tunnel to the server; returns any bytes past the proxy's answer."""
    target = f"[{route.host}]:{route.port}" if ":" in route.host else f"{route.host}:{route.port}"
    head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    proxy = urlsplit(route.proxy or "")
    if proxy.username:  # as requests does for a proxy URL with credentials
        secret = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
        head += f"Proxy-Authorization: Basic {base64.b64encode(secret.encode()).decode()}\r\n"
    answer = b""
    try:
        stream.sendall(f"{head}\r\n".encode())
        while b"\r\n\r\n" not in answer:
            if len(answer) > MAX_PROXY_ANSWER:
                raise ProbeError(
                    f"the proxy {route.proxy_shown} answered CONNECT {target} with more than"
                    f" {MAX_PROXY_ANSWER // 1024} KiB and no end of its headers"
                )
            data = stream.recv(4096)
            if not data:
                raise ConnectionResetError
            answer += data
    except OSError as e:
        raise ProbeError(f"the proxy {route.proxy_shown} failed: {plain(e)}") from None
    head_bytes, _, early = answer.partition(b"\r\n\r\n")
    status = printable(head_bytes.split(b"\r\n", 1)[0].decode("latin-1"))
    if status.split()[1:2] != ["200"]:
        raise ProbeError(f"the proxy {route.proxy_shown} refused CONNECT {target}: {status}")
    return early


def _tls(stream: socket.socket, early: bytes, context: ssl.SSLContext, host: str) -> ssl.SSLObject:
    """Returns the finished TLS session with the server, run over memory buffers."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    incoming.write(early)
    tls = context.wrap_bio(incoming, outgoing, server_hostname=host)
    while True:
        try:
            tls.do_handshake()
            return tls
        except ssl.SSLWantReadError:
            pass
        finally:
            # Whatever the handshake has to say: hello, finished, or the alert for a refusal.
            with contextlib.suppress(OSError):
                stream.sendall(outgoing.read())
        data = stream.recv(65536)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        incoming.write(data)


def _presented(cert: Any) -> Presented:
    info = cert.get_info()
    alt_names = info.get("subjectAltName", ())
    pem = cert.public_bytes()
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
    return Presented(  # the server chose the names: printable, for every later message
        subject=printable(_name(info.get("subject", ()))),
        issuer=printable(_name(info.get("issuer", ()))),
        not_before=_time(info["notBefore"]),
        not_after=_time(info["notAfter"]),
        names=tuple(printable(value) for _, value in alt_names),
        sha256=":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
        pem=pem,
        dns_names=tuple(printable(value) for kind, value in alt_names if kind == "DNS"),
        ip_addresses=tuple(value for kind, value in alt_names if kind == "IP Address"),
    )


def _same_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, value: str) -> bool:
    try:
        return ipaddress.ip_address(value.strip()) == address
    except ValueError:
        return False


def _name_matches(name: str, host: str) -> bool:
    name, host = name.lower().rstrip("."), host.lower().rstrip(".")
    if name == host:
        return True
    # "*.example.com" stands for exactly one label, never a partial one ("w*.example.com").
    label, _, rest = host.partition(".")
    return name.startswith("*.") and bool(label) and name[2:] == rest and "." in rest


def _name(rdns: Any) -> str:
    parts = [f"{_NAMES.get(key, key)}={value}" for rdn in rdns for key, value in rdn]
    return ", ".join(parts) or "(empty name)"


def _time(text: str) -> datetime:
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(text), timezone.utc)
