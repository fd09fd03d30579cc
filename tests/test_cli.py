"""The command line, run as ``python -m cmem_adapter`` against loopback TLS servers."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import itertools
import os
import re
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import certifi
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from servers import ConnectProxy, HTTPSProxy, HTTPSServer

import cmem_adapter
from cmem_adapter import terminal

REPO = Path(cmem_adapter.__file__).resolve().parents[1]
DEBUG_STAMP = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] ")
TRUST_VARIABLES = {
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "SSL_VERIFY",
}


@dataclass(frozen=True)
class Served:
    """Certificate and key files for one server, and what the client should see."""

    cert: str
    key: str
    pems: tuple[str, ...]
    """The certificates the server presents, leaf first."""


@dataclass(frozen=True)
class Certs:
    ca: trustme.CA
    ca_file: str
    good: Served
    expired: Served
    wrong_host: Served
    with_intermediate: Served


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """One trustme CA, and server certificates: good, expired, for another host, chained."""
    folder = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))

    def served(name: str, leaf: trustme.LeafCert) -> Served:
        pems = tuple(blob.bytes().decode() for blob in leaf.cert_chain_pems)
        (folder / f"{name}.pem").write_text("".join(pems))
        leaf.private_key_pem.write_to_path(str(folder / f"{name}-key.pem"))
        return Served(str(folder / f"{name}.pem"), str(folder / f"{name}-key.pem"), pems)

    past = datetime.datetime(2019, 1, 1), datetime.datetime(2020, 1, 1)
    return Certs(
        ca=ca,
        ca_file=str(folder / "ca.pem"),
        good=served("good", ca.issue_cert("127.0.0.1", "localhost")),
        expired=served(
            "expired", ca.issue_cert("127.0.0.1", not_before=past[0], not_after=past[1])
        ),
        wrong_host=served("wrong-host", ca.issue_cert("example.test")),
        with_intermediate=served("chained", ca.create_child_ca().issue_cert("127.0.0.1")),
    )


@pytest.fixture(scope="module")
def good_server(certs: Certs) -> Iterator[HTTPSServer]:
    with HTTPSServer(certs.good.cert, certs.good.key) as https:
        yield https


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment without trust, proxy or cmemc settings; an empty HOME; warnings fail."""
    home = tmp_path / "cli-home"
    home.mkdir()
    clean = {
        name: value
        for name, value in os.environ.items()
        if name not in TRUST_VARIABLES
        and not name.lower().endswith("_proxy")
        and not name.startswith("CMEM")
    }
    clean.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        TMPDIR=str(tmp_path),
        PYTHONPATH=str(REPO),
        PYTHONWARNINGS="error",
    )
    return clean


def cli(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m cmem_adapter ARGS`` and returns what it did."""
    return subprocess.run(
        [sys.executable, "-m", "cmem_adapter", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ca_name(certs: Certs) -> x509.Name:
    return x509.load_pem_x509_certificate(certs.ca.cert_pem.bytes()).subject


def unit(name: x509.Name) -> str:
    """Returns the OU of a trustme name, the part unique to each certificate."""
    return str(name.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value)


def ders(text: str) -> list[bytes]:
    """Returns the DER form of each PEM certificate in `text`."""
    pems = re.findall("-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.S)
    return [ssl.PEM_cert_to_DER_cert(pem) for pem in pems]


def fingerprint(pem: str) -> str:
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
    return ":".join(re.findall("..", digest))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_escaped(text: str) -> None:
    """Fails if `text` holds a character a terminal acts on or hides, other than newlines."""
    raw = {c for c in text if c != "\n" and not c.isprintable()}
    assert not raw, (raw, text)


@contextlib.contextmanager
def raw_server(serve: Callable[[socket.socket, int], None]) -> Iterator[int]:
    """Yields the port of a loopback listener calling `serve(connection, number)` for each one,
    number counting from 1; stopped and joined afterwards."""
    listener = socket.create_server(("127.0.0.1", 0))
    threads = []

    def accept() -> None:
        for number in itertools.count(1):
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: stop
                return
            thread = threading.Thread(target=serve_one, args=(conn, number))
            threads.append(thread)
            thread.start()

    def serve_one(conn: socket.socket, number: int) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(10)
            serve(conn, number)

    acceptor = threading.Thread(target=accept)
    acceptor.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(10)
        for thread in threads:
            thread.join(10)


HOSTILE = "x\x1b[1A\r\x1b[2K     SHA-256:    " + ":".join(["AA"] * 32) + "\n\u202eevil\u2066\x9b"
"""Text a hostile server puts in its certificate: up a line, erase it, fake a fingerprint."""


def hostile_server_files(folder: Path) -> tuple[str, str]:
    """Returns (certificate, key) of a self-signed server whose name holds terminal controls."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "cmem.example.com"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, HOSTILE),
        ]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("\x1b]0;owned\x07evil.test")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    files = folder / "hostile.pem", folder / "hostile.key"
    files[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(files[0]), str(files[1])


# check


def test_check_ok_with_bundle_and_debug_lines(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer, tmp_path: Path
) -> None:
    (tmp_path / "ca.pem").write_text(certs.ca.cert_pem.bytes().decode())
    env["REQUESTS_CA_BUNDLE"] = "ca.pem"

    done = cli(env, "--debug", "check", good_server.url, cwd=tmp_path)

    assert done.returncode == 0, done
    assert done.stdout.splitlines() == [
        f"Source: CA bundle loaded from {tmp_path / 'ca.pem'}",
        "  REQUESTS_CA_BUNDLE set by env to ca.pem",
        f"OK: HTTP 200 from {good_server.url}",
    ]
    debug = done.stderr.splitlines()
    assert debug and all(DEBUG_STAMP.match(line) for line in debug), done.stderr
    assert any(line.endswith(f"] CA bundle loaded from {tmp_path / 'ca.pem'}") for line in debug)
    assert any(f"] Mounted TrustAdapter (bundle) on {good_server.url}" in line for line in debug)


def test_check_with_verification_off_says_the_bundle_is_ignored(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer
) -> None:
    env.update(SSL_VERIFY="false", REQUESTS_CA_BUNDLE=certs.ca_file)

    done = cli(env, "check", good_server.url)

    assert done.returncode == 0, done
    assert done.stdout.splitlines() == [
        "Source: Not verifying TLS certificates (SSL_VERIFY=false)",
        "  SSL_VERIFY set by env to false",
        f"  REQUESTS_CA_BUNDLE set by env to {certs.ca_file}; ignored: verification is off",
        f"OK: HTTP 200 from {good_server.url}",
    ]


def test_check_refused_by_default_certifi_explains_and_suggests_fetch_chain(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer, tmp_path: Path
) -> None:
    done = cli(env, "check", good_server.url, cwd=tmp_path)

    assert done.returncode == 1, done
    assert "Traceback" not in done.stdout + done.stderr
    out = done.stdout
    assert "  by default: SSL_VERIFY and REQUESTS_CA_BUNDLE are not set" in out
    assert (
        f"the trust source certifi (by default) refused the certificate of {good_server.url}" in out
    )
    assert f"issued by O=trustme v1.2.1, OU={unit(ca_name(certs))}" in out
    assert (
        f"unknown issuer: O=trustme v1.2.1, OU={unit(ca_name(certs))} is not among certifi's CAs"
        in out
    )
    assert "Other sources: certifi refuses it (unknown issuer); system refuses it" in out
    assert f"`cmem-adapter fetch-chain {good_server.url} -o ca.pem`" in out
    assert f"REQUESTS_CA_BUNDLE={tmp_path / 'ca.pem'}" in out
    assert "intercepting" not in out


def test_check_suggests_system_when_the_os_store_trusts_the_server(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer
) -> None:
    env["SSL_CERT_FILE"] = certs.ca_file  # the "OS store" trusts it; certifi does not

    done = cli(env, "check", good_server.url)

    assert done.returncode == 1, done
    assert "system accepts it" in done.stdout
    assert "Fix: set SSL_VERIFY=system: the operating system's trust store" in done.stdout


@pytest.mark.parametrize(
    ("which", "why", "fix"),
    [
        (
            "expired",
            "Why: expired: O=trustme v1.2.1, OU=Testing cert",
            "The server's administrator must renew the certificate",
        ),
        (
            "wrong_host",
            "Why: name mismatch: the certificate is for example.test, not 127.0.0.1",
            "Use a name the certificate is for, e.g. https://example.test:{port}/",
        ),
    ],
)
def test_check_explains_a_certificate_no_trust_setting_fixes(
    env: dict[str, str], certs: Certs, which: str, why: str, fix: str
) -> None:
    served: Served = getattr(certs, which)
    env["REQUESTS_CA_BUNDLE"] = certs.ca_file
    with HTTPSServer(served.cert, served.key) as https:
        done = cli(env, "check", https.url)

    assert done.returncode == 1, done
    out = done.stdout
    assert "the trust source bundle (chosen by REQUESTS_CA_BUNDLE (env)) refused" in out
    assert why in out
    assert f"Fix: no trust setting fixes this. {fix.format(port=https.port)}" in out
    assert "Other sources" not in out
    if which == "expired":
        assert "expired 2020-01-01 00:00:00 UTC (certificate has expired)" in out


def test_check_with_connection_uses_its_section_and_does_not_follow_redirects(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer, tmp_path: Path
) -> None:
    config = tmp_path / "config.ini"
    config.write_text("[mine]\nREQUESTS_CA_BUNDLE = other-ca.pem\n[yours]\n")
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    env["REQUESTS_CA_BUNDLE"] = certs.ca_file  # below the section: does not count
    elsewhere = good_server.url.replace("127.0.0.1", "localhost")
    redirect = f"{good_server.url}redirect?to={elsewhere}"

    refused = cli(
        env, "--config-file", "config.ini", "-c", "mine", "check", good_server.url, cwd=tmp_path
    )
    redirected = cli(env, "--config-file", str(config), "-c", "yours", "check", redirect)

    assert refused.returncode == 1, refused
    out = refused.stdout
    assert f"  REQUESTS_CA_BUNDLE set by config to other-ca.pem ([mine] in {config})\n" in out
    # Its own CA file is kept: the saved chain goes into it (a bundle trusts each as an anchor).
    fix = (
        f"add the saved certificates to {tmp_path / 'other-ca.pem'} (REQUESTS_CA_BUNDLE, [mine]"
        f" in {config})"
    )
    assert out.endswith(f"{fix}\n")
    assert redirected.returncode == 0, redirected
    assert redirected.stdout.endswith(
        f"OK: HTTP 302 from {redirect} (redirect to {elsewhere}, not followed)\n"
    )


def test_check_through_connect_proxy(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer
) -> None:
    env["REQUESTS_CA_BUNDLE"] = certs.ca_file
    with ConnectProxy() as proxy:
        env["HTTPS_PROXY"] = proxy.url
        done = cli(env, "check", good_server.url)

    assert done.returncode == 0, done
    assert done.stdout.endswith(f"OK: HTTP 200 from {good_server.url}\n")
    assert proxy.log == [f"CONNECT 127.0.0.1:{good_server.port}"]


def test_check_through_proxy_suspects_interception_and_hides_credentials(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer
) -> None:
    with ConnectProxy(require_auth=("alice", "pa55word")) as proxy:
        env["HTTPS_PROXY"] = proxy.url_with_auth("alice", "pa55word")
        done = cli(env, "check", good_server.url)

    assert done.returncode == 1, done
    assert "pa55word" not in done.stdout + done.stderr
    assert f"The server presented (through {proxy.url}):" in done.stdout
    assert f"the request went through the proxy {proxy.url}" in done.stdout
    assert "presented by a TLS-intercepting proxy rather than the server" in done.stdout
    assert (
        "Fix: trust the proxy's CA (your network administrators have it): set"
        " REQUESTS_CA_BUNDLE=<a PEM file with the proxy's CA certificate> and SSL_VERIFY=certifi"
    ) in done.stdout
    # requests, then the probes (chain, certifi, certifi, system), all authenticated.
    assert len(proxy.log) == 5
    assert proxy.auth_headers == [f"Basic {base64.b64encode(b'alice:pa55word').decode()}"] * 5


def test_check_connection_refused_is_one_line(env: dict[str, str]) -> None:
    url = f"https://127.0.0.1:{free_port()}/"

    done = cli(env, "check", url)

    assert done.returncode == 1, done
    assert done.stdout.splitlines()[-1] == f"FAILED: {url}: connection refused"
    assert done.stderr == ""


def test_bad_ssl_verify_exits_2_naming_key_and_accepted_values(env: dict[str, str]) -> None:
    env["SSL_VERIFY"] = "maybe"

    done = cli(env, "check", "https://127.0.0.1:9/")

    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: SSL_VERIFY set by env to 'maybe': not an accepted value")
    assert "true, false, 1, 0, yes, no, on, off, certifi, system, truststore" in done.stderr


ESCAPED = (
    "x\\x1b[1A\\r\\x1b[2K     SHA-256:    " + ":".join(["AA"] * 32) + "\\n\\u202eevil\\u2066\\x9b"
)


def test_check_never_proposes_the_setting_in_effect(
    env: dict[str, str], certs: Certs, tmp_path: Path
) -> None:
    # What fetch-chain saved: the leaf and the intermediate, not the root the server never sent.
    saved = tmp_path / "ca.pem"
    saved.write_text("".join(certs.with_intermediate.pems))
    env.update(SSL_VERIFY="system", REQUESTS_CA_BUNDLE=str(saved))
    served = certs.with_intermediate
    with HTTPSServer(served.cert, served.key) as https:
        done = cli(env, "check", https.url, cwd=tmp_path)
        as_certifi = cli({**env, "SSL_VERIFY": "certifi"}, "check", https.url)
        saved.write_text(saved.read_text() + certs.ca.cert_pem.bytes().decode())
        with_root = cli(env, "check", https.url)

    assert done.returncode == 1, done
    fix = done.stdout.splitlines()[-1]
    assert fix == (
        "Fix: SSL_VERIFY=system needs the root CA among its extra CAs, and the server does not"
        " send it: get the root CA certificate (PEM) from the server's administrator and add it"
        f" to {saved}; or set SSL_VERIFY=certifi, which takes every extra CA as a trust anchor:"
        f" then {saved} is enough"
    )
    assert f"REQUESTS_CA_BUNDLE={saved}" not in done.stdout
    assert "fetch-chain" not in done.stdout
    # Either way out works.
    assert as_certifi.returncode == 0, as_certifi
    assert with_root.returncode == 0, with_root


def test_check_never_overwrites_the_bundle_in_use(
    env: dict[str, str], good_server: HTTPSServer, tmp_path: Path
) -> None:
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))  # another server's CA
    env["REQUESTS_CA_BUNDLE"] = "ca.pem"

    done = cli(env, "check", good_server.url, cwd=tmp_path)

    assert done.returncode == 1, done
    assert done.stdout.splitlines()[-1] == (
        f"Fix: save the chain with `cmem-adapter fetch-chain {good_server.url} -o server-ca.pem`,"
        f" check it, then add the saved certificates to {tmp_path / 'ca.pem'}"
        " (REQUESTS_CA_BUNDLE, env)"
    )


def test_check_refused_https_proxy_under_system_does_not_propose_system(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer, tmp_path: Path
) -> None:
    proxy_cert = trustme.CA().issue_cert("127.0.0.1")
    proxy_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "proxy.pem"))
    env.update(SSL_VERIFY="system", SSL_CERT_FILE=certs.ca_file)  # the server's CA, not the proxy's
    with HTTPSProxy(tmp_path / "proxy.pem", tmp_path / "proxy.pem") as proxy:
        env["HTTPS_PROXY"] = proxy.url
        done = cli(env, "check", good_server.url)

    assert done.returncode == 1, done
    assert done.stdout.splitlines()[-1] == (
        "Fix: trust the proxy's CA (your network administrators have it): set"
        " REQUESTS_CA_BUNDLE=<a PEM file with the proxy's CA certificate> (extra CAs to the"
        " system's)"
    )


@pytest.mark.parametrize("bundle", [None, "public"])
def test_check_says_when_its_fix_would_drop_the_public_cas(
    env: dict[str, str], good_server: HTTPSServer, tmp_path: Path, bundle: str | None
) -> None:
    public = tmp_path / "distribution-bundle.pem"  # as a container's REQUESTS_CA_BUNDLE
    public.write_text(Path(certifi.where()).read_text())
    if bundle:
        env["REQUESTS_CA_BUNDLE"] = str(public)
    count = len(ders(public.read_text()))

    done = cli(env, "check", good_server.url, cwd=tmp_path)
    saved = cli(env, "fetch-chain", good_server.url, "-o", "ca.pem", cwd=tmp_path)
    advised = {**env, "SSL_VERIFY": "certifi", "REQUESTS_CA_BUNDLE": str(tmp_path / "ca.pem")}
    followed = cli(advised, "check", good_server.url)

    assert done.returncode == 1, done
    replaced = f"{public}, with its {count} public CAs" if bundle else "certifi's public CAs"
    note = (
        f"Note: REQUESTS_CA_BUNDLE alone replaces {replaced}: other https:// servers would fail"
        " then. To keep them, set SSL_VERIFY=certifi as well: the file then adds to them"
    )
    assert done.stdout.splitlines()[-2:] == [
        f"Fix: save the chain with `cmem-adapter fetch-chain {good_server.url} -o ca.pem`, check"
        f" it, then set REQUESTS_CA_BUNDLE={tmp_path / 'ca.pem'}",
        note,
    ]
    assert saved.returncode == 0, saved
    assert note in saved.stdout
    assert followed.returncode == 0, followed  # the saved chain, on top of the public CAs


def _not_yet_valid(certs: Certs) -> tuple[trustme.LeafCert, str]:
    """Returns a certificate valid from 10 days on, and that moment as messages show it."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
    begins = now + datetime.timedelta(days=10)
    leaf = certs.ca.issue_cert(
        "127.0.0.1", not_before=begins, not_after=begins + datetime.timedelta(days=10)
    )
    return leaf, f"{begins:%Y-%m-%d %H:%M:%S} UTC"


def _leaf_files(leaf: trustme.LeafCert, folder: Path) -> tuple[str, str]:
    cert, key = folder / "leaf.pem", folder / "leaf-key.pem"
    cert.write_text("".join(blob.bytes().decode() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


@pytest.mark.parametrize("which", ["expired", "wrong_host", "not_yet_valid"])
def test_check_sees_what_an_unknown_issuer_hides(
    env: dict[str, str], certs: Certs, tmp_path: Path, which: str
) -> None:
    if which == "not_yet_valid":
        leaf, begins = _not_yet_valid(certs)
        files = _leaf_files(leaf, tmp_path)
        problem = f"is valid only from {begins}"
        fix = "Fix: check this machine's clock; if it is right, the server's administrator"
    else:
        served: Served = getattr(certs, which)
        files = served.cert, served.key
        problem = {
            "expired": "expired 2020-01-01 00:00:00 UTC",
            "wrong_host": "is for example.test, not 127.0.0.1",
        }[which]
        fix = {
            "expired": "Fix: the server's administrator must renew the certificate",
            "wrong_host": "Fix: use a name the certificate is for, e.g. https://example.test:",
        }[which]
    with HTTPSServer(*files) as https:
        done = cli(env, "check", https.url, cwd=tmp_path)  # certifi: its CA is unknown

    assert done.returncode == 1, done
    lines = done.stdout.splitlines()
    assert any(line.startswith("Why: unknown issuer: ") for line in lines), done.stdout
    assert f"Also: the server's certificate {problem}: trusting its CA will not be enough" in lines
    fixes = [line for line in lines if line.startswith("Fix: ")]
    assert len(fixes) == 1 and fixes[0].startswith(fix), fixes
    assert lines[lines.index(fixes[0]) + 1].startswith(
        "Then, to trust its CA: save the chain with `cmem-adapter fetch-chain"
    )


def test_check_sees_what_an_unknown_issuer_hides_at_the_https_proxy(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer, tmp_path: Path
) -> None:
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    env["REQUESTS_CA_BUNDLE"] = str(tmp_path / "other-ca.pem")  # trusts no CA of the proxy's
    with HTTPSProxy(certs.expired.cert, certs.expired.key) as proxy:
        env["HTTPS_PROXY"] = proxy.url
        done = cli(env, "check", good_server.url)

    assert done.returncode == 1, done
    lines = done.stdout.splitlines()
    assert lines[-4].startswith("Why: unknown issuer: "), done.stdout
    assert lines[-3:] == [
        "Also: the proxy's certificate expired 2020-01-01 00:00:00 UTC: trusting its CA will"
        " not be enough",
        "Fix (the proxy's certificate): the server's administrator must renew the certificate"
        " (or this machine's clock is wrong)",
        "Then, to trust its CA: trust the proxy's CA (your network administrators have it): add"
        f" the proxy's CA certificate to {tmp_path / 'other-ca.pem'} (REQUESTS_CA_BUNDLE: its"
        " CAs verify the proxy and the server alike); or set SSL_VERIFY=system if the operating"
        " system trusts that CA",
    ]


def test_check_takes_the_connections_base_uri_when_no_url_is_given(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer, tmp_path: Path
) -> None:
    config = tmp_path / "config.ini"
    config.write_text(
        f"[corp]\nCMEM_BASE_URI = {good_server.url}\nREQUESTS_CA_BUNDLE = {certs.ca_file}\n[bare]\n"
    )
    where = f"[corp] in {config}"

    checked = cli(env, "--config-file", str(config), "-c", "corp", "check")
    fetched = cli(
        env, "--config-file", str(config), "-c", "corp", "fetch-chain", "-o", "c.pem", cwd=tmp_path
    )
    from_env = cli({**env, "CMEM_BASE_URI": good_server.url}, "check")
    neither = cli(env, "--config-file", str(config), "-c", "bare", "check")

    assert checked.returncode == 0, checked
    assert checked.stdout.splitlines()[0] == (
        f"URL: {good_server.url}  (CMEM_BASE_URI set by config, {where})"
    )
    assert checked.stdout.endswith(f"OK: HTTP 200 from {good_server.url}\n")
    assert fetched.returncode == 0, fetched
    assert f"CMEM_BASE_URI set by config, {where}" in fetched.stdout
    assert from_env.returncode == 1, from_env  # certifi: refused, but checked
    assert from_env.stdout.startswith(f"URL: {good_server.url}  (CMEM_BASE_URI set by env)\n")
    assert neither.returncode == 2, neither
    assert neither.stdout == ""
    assert neither.stderr == (
        f"error: no URL given, and CMEM_BASE_URI is not set in [bare] in {config} nor in the"
        " environment. Fix: give the URL, e.g. `cmem-adapter check https://cmem.example.com/`,"
        " or set CMEM_BASE_URI in the connection's config.ini section (chosen with -c) or in the"
        " environment\n"
    )


def test_global_options_work_after_the_command_too(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer, tmp_path: Path
) -> None:
    config = tmp_path / "config.ini"
    config.write_text(f"[mine]\nREQUESTS_CA_BUNDLE = {certs.ca_file}\n")
    line = f"  REQUESTS_CA_BUNDLE set by config to {certs.ca_file} ([mine] in {config})"

    after = cli(
        env, "check", "--debug", "--config-file", str(config), "-c", "mine", good_server.url
    )
    before = cli(
        env, "--config-file", str(config), "--connection", "mine", "check", good_server.url
    )
    mixed = cli(
        env, "-c", "mine", "--debug", "check", "--config-file", str(config), good_server.url
    )

    for done in (after, before, mixed):
        assert done.returncode == 0, done
        assert line in done.stdout.splitlines()
    assert DEBUG_STAMP.match(after.stderr) and DEBUG_STAMP.match(mixed.stderr)
    assert before.stderr == ""


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (
            "localhost:9443",
            "error: URL 'localhost:9443' has no scheme. Fix: use https://localhost:9443/",
        ),
        (
            "http://127.0.0.1:9/",
            "error: URL 'http://127.0.0.1:9/': http:// involves no TLS, so there is no certificate"
            " to check (only the hop to an https:// proxy has one). Fix: check the server's"
            " https:// URL",
        ),
    ],
)
@pytest.mark.parametrize("command", ["check", "fetch-chain"])
def test_a_url_that_is_not_https_says_what_to_give(
    env: dict[str, str], command: str, url: str, error: str
) -> None:
    done = cli(env, command, url)

    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr == f"{error}\n"


def test_check_a_url_with_credentials_is_not_a_base_url_error(env: dict[str, str]) -> None:
    port = free_port()

    done = cli(env, "check", f"https://alice:S3cret@127.0.0.1:{port}/")

    assert done.returncode == 1, done
    assert "S3cret" not in done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == f"FAILED: https://127.0.0.1:{port}/: connection refused"


@pytest.mark.parametrize(("files", "counted"), [(1, "1 file"), (2, "2 files")])
def test_a_ca_directory_without_certificates_counts_its_files(
    env: dict[str, str], tmp_path: Path, files: int, counted: str
) -> None:
    folder = tmp_path / "cas"
    folder.mkdir()
    for number in range(files):
        (folder / f"notes-{number}.txt").write_text("no certificate here\n")
    env["REQUESTS_CA_BUNDLE"] = str(folder)

    done = cli(env, "check", "https://127.0.0.1:9/")

    assert done.returncode == 2, done
    assert f"the directory holds no PEM certificate ({counted} looked at)" in done.stderr


def test_check_lists_the_settings_that_chose_the_source(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer, tmp_path: Path
) -> None:
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "extra.pem"))
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "store.pem"))
    config = tmp_path / "config.ini"
    config.write_text(f"[mine]\nREQUESTS_CA_BUNDLE = {tmp_path / 'extra.pem'}\n")
    env.update(SSL_VERIFY="system", SSL_CERT_FILE=str(tmp_path / "store.pem"))

    done = cli(env, "--config-file", str(config), "-c", "mine", "check", good_server.url)

    assert done.returncode == 1, done
    assert (
        "FAILED: the trust source system + extra CAs (chosen by SSL_VERIFY (env),"
        f" REQUESTS_CA_BUNDLE ([mine] in {config}), SSL_CERT_FILE (env)) refused the certificate of"
        f" {good_server.url}\n"
    ) in done.stdout


def test_check_escapes_what_the_server_sent(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer, tmp_path: Path
) -> None:
    with HTTPSServer(*hostile_server_files(tmp_path)) as https:
        refused = cli(env, "check", https.url)
    target = "%1B%5B2K%C2%9BX"  # the Location header: ESC [2K, then the C1 CSI (U+009B)
    redirect = f"{good_server.url}redirect?to={target}"
    redirected = cli({**env, "REQUESTS_CA_BUNDLE": certs.ca_file}, "check", redirect)

    assert refused.returncode == 1, refused
    assert_escaped(refused.stdout + refused.stderr)
    assert f"  1. CN=cmem.example.com, OU={ESCAPED}, issued by itself" in refused.stdout
    assert f"Why: self-signed: CN=cmem.example.com, OU={ESCAPED} signed its own" in refused.stdout
    assert redirected.returncode == 0, redirected
    assert_escaped(redirected.stdout)
    assert redirected.stdout.endswith("(redirect to \\x1b[2K\\x9bX, not followed)\n")


def test_say_masks_url_passwords_and_escapes_controls(capsys: pytest.CaptureFixture[str]) -> None:
    terminal.say("FAILED: http://bob:S3cret@h:1 \x1b[2K\u202e", "two\nlines\r")

    out = capsys.readouterr().out
    assert out == "FAILED: http://bob:***@h:1 \\x1b[2K\\u202e\ntwo\nlines\\r\n"


@pytest.mark.parametrize("command", ["check", "fetch-chain"])
@pytest.mark.parametrize(
    ("proxy", "problem"),
    [
        ("http://bob:S3cret@127.0.0.1:99999", "is not a valid URL"),
        ("socks9://bob:S3cret@127.0.0.1:1080", "is not a proxy URL with a host and one of"),
    ],
)
def test_an_unusable_proxy_is_a_configuration_error_without_its_password(
    env: dict[str, str], command: str, proxy: str, problem: str
) -> None:
    env["HTTPS_PROXY"] = proxy

    done = cli(env, command, "https://127.0.0.1:9/")

    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    masked = proxy.replace("S3cret", "***")
    assert done.stderr.startswith(f"error: the proxy '{masked}' (from the environment)")
    assert problem in done.stderr
    assert "S3cret" not in done.stderr


BAD_URLS = [
    "https://h:99999/",
    "https://[::1",
    "https://exa mple.com/",
    f"https://{'a' * 64}.com/",
    "https://a..b/",
    "https://.example/",
    "https://h\x1b[2K/",
    "http://127.0.0.1:9/",
]


@pytest.mark.parametrize("command", ["check", "fetch-chain"])
@pytest.mark.parametrize("through_proxy", [False, True])
@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_url_is_one_error_line(
    env: dict[str, str], command: str, through_proxy: bool, url: str
) -> None:
    if through_proxy:
        env["HTTPS_PROXY"] = f"http://127.0.0.1:{free_port()}"

    done = cli(env, command, url)

    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.startswith("error: "), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert_escaped(done.stderr)


def test_check_a_server_that_stops_answering_is_one_failure(
    env: dict[str, str], tmp_path: Path
) -> None:
    other = trustme.CA().issue_cert("127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other.configure_cert(context)

    def handshake_three_times(conn: socket.socket, number: int) -> None:
        if number <= 3:  # requests, the chain, the policy's verdict; then it goes quiet
            context.wrap_socket(conn, server_side=True).close()

    with raw_server(handshake_three_times) as port:
        done = cli(env, "check", f"https://127.0.0.1:{port}/")

    assert done.returncode == 1, done
    assert done.stderr == ""
    assert "Why: unknown issuer:" in done.stdout
    assert f"Other sources: not known (TLS handshake with 127.0.0.1:{port} failed" in done.stdout
    lines = done.stdout.splitlines()
    assert any(line.startswith("Fix: save the chain with `cmem-adapter") for line in lines)


def test_check_explains_a_refused_https_proxy(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer, tmp_path: Path
) -> None:
    proxy_ca = trustme.CA()
    proxy_cert = proxy_ca.issue_cert("127.0.0.1")
    proxy_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "proxy.pem"))
    env["REQUESTS_CA_BUNDLE"] = certs.ca_file  # trusts the server, not the proxy
    with HTTPSProxy(
        tmp_path / "proxy.pem", tmp_path / "proxy.pem", require_auth=("bob", "S3cret")
    ) as proxy:
        env["HTTPS_PROXY"] = proxy.url_with_auth("bob", "S3cret")
        done = cli(env, "check", good_server.url)

    assert done.returncode == 1, done
    assert "S3cret" not in done.stdout + done.stderr
    out = done.stdout
    assert (
        f"FAILED: {good_server.url} was not reached: the TLS connection to the proxy {proxy.url}"
        " (from the environment) was refused: the trust source bundle (chosen by"
        " REQUESTS_CA_BUNDLE (env)), which verifies the proxy as well as the server,"
        " refused the proxy's certificate\nThe proxy presented:\n  1. O=trustme v1.2.1," in out
    )
    proxy_ca_name = x509.load_pem_x509_certificate(proxy_ca.cert_pem.bytes()).subject
    assert (
        f"Why: unknown issuer: O=trustme v1.2.1, OU={unit(proxy_ca_name)} is not among the CAs"
        f" in {certs.ca_file}" in out
    )
    assert out.splitlines()[-1] == (
        "Fix: trust the proxy's CA (your network administrators have it): add the proxy's CA"
        f" certificate to {certs.ca_file} (REQUESTS_CA_BUNDLE: its CAs verify the proxy and the"
        " server alike); or set SSL_VERIFY=system if the operating system trusts that CA"
    )
    assert proxy.log == []  # no CONNECT: refused at the proxy's handshake


def test_check_names_the_proxy_that_failed(env: dict[str, str], good_server: HTTPSServer) -> None:
    with ConnectProxy(require_auth=("bob", "S3cret")) as proxy:
        env["HTTPS_PROXY"] = proxy.url_with_auth("bob", "wrong-S3cret")
        done = cli(env, "check", good_server.url)

    assert done.returncode == 1, done
    assert "S3cret" not in done.stdout + done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.startswith(
        f"FAILED: {good_server.url} was not reached: the proxy {proxy.url} failed: "
    )
    assert "407 Proxy Authentication Required" in last


def test_debug_check_says_why_it_builds_other_sources(
    env: dict[str, str], good_server: HTTPSServer
) -> None:
    done = cli(env, "--debug", "check", good_server.url)

    assert done.returncode == 1, done
    debug = [DEBUG_STAMP.sub("", line) for line in done.stderr.splitlines()]
    announced = "Checking which other trust sources would accept the server (for the explanation)"
    assert debug.count(announced) == 1, debug
    chosen, compared = debug[: debug.index(announced)], debug[debug.index(announced) + 1 :]
    assert f"Mounted TrustAdapter (certifi) on {good_server.url}" in chosen
    assert len(compared) == 2, compared  # certifi, then the system store (no settings)
    assert compared[0].startswith("Trusting certifi's CA bundle")
    assert compared[1].startswith("Trusting ")


# show

CONFIG = """\
[DEFAULT]
SSL_VERIFY = certifi
OAUTH_CLIENT_SECRET = t0p-s3cret

[prod]
CMEM_BASE_URI = https://cmem.example.com
REQUESTS_CA_BUNDLE = ca.pem

[dev]
SSL_VERIFY = false
"""


def test_show_lists_settings_with_origins_and_withholds_secrets(
    env: dict[str, str], certs: Certs, tmp_path: Path
) -> None:
    config_dir = Path(env["XDG_CONFIG_HOME"]) / "cmemc"
    config_dir.mkdir(parents=True)
    config = config_dir / "config.ini"
    config.write_text(CONFIG)
    (config_dir / "ca.pem").write_text(certs.ca.cert_pem.bytes().decode())
    env["SSL_VERIFY"] = "system"  # below [prod], above [DEFAULT]

    done = cli(env, "-c", "prod", "show", cwd=tmp_path)

    assert done.returncode == 0, done
    assert "t0p-s3cret" not in done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        f"Config file: {config}",
        "Connection: prod",
        "Settings:",
        "  SSL_VERIFY = system  (set by env)",
        f"  REQUESTS_CA_BUNDLE = ca.pem  (set by config, [prod] in {config})",
        f"  CMEM_BASE_URI = https://cmem.example.com  (set by config, [prod] in {config})",
        f"  OAUTH_CLIENT_SECRET = (withheld)  (set by config, [DEFAULT] in {config})",
        done.stdout.splitlines()[-1],
    ]
    source = done.stdout.splitlines()[-1]
    assert source.startswith("Source: Trusting the system trust store")
    assert source.endswith(f"plus extra CAs from {config_dir / 'ca.pem'}")

    other = cli(env, "--config-file", str(config), "--connection", "dev", "show")

    assert other.returncode == 0, other
    assert f"  SSL_VERIFY = false  (set by config, [dev] in {config})" in other.stdout
    assert "Source: Not verifying TLS certificates (SSL_VERIFY=false)" in other.stdout


def test_show_without_config_and_unknown_connection(env: dict[str, str]) -> None:
    default = Path(env["XDG_CONFIG_HOME"]) / "cmemc" / "config.ini"

    done = cli(env, "show")
    missing = cli(env, "-c", "prod", "show")

    assert done.returncode == 0, done
    assert done.stdout.splitlines() == [
        f"Config file: none ({default} does not exist)",
        "Connection: none",
        "Settings: none",
        f"Source: Trusting certifi's CA bundle (certifi {cmem_adapter.policy.certifi.__version__})",
    ]
    assert missing.returncode == 2, missing
    assert missing.stderr.startswith("error: connection 'prod': no such section")


def test_show_masks_url_passwords(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "config.ini"
    config.write_text(
        "[prod]\nCMEM_BASE_URI = https://admin:Hunter2@cmem.example.com\n"
        "HTTPS_PROXY = http://proxyuser:ProxyPw@proxy.example:3128\n"
    )

    done = cli(env, "--config-file", str(config), "-c", "prod", "show")

    assert done.returncode == 0, done
    assert "Hunter2" not in done.stdout and "ProxyPw" not in done.stdout
    assert "  CMEM_BASE_URI = https://admin:***@cmem.example.com  (set by config" in done.stdout
    assert "  HTTPS_PROXY = http://proxyuser:***@proxy.example:3128  (set by config" in done.stdout


def test_show_marks_cert_file_and_dir_in_config_as_ignored(
    env: dict[str, str], certs: Certs, tmp_path: Path
) -> None:
    config = tmp_path / "config.ini"
    config.write_text(
        "[prod]\nSSL_VERIFY = system\nSSL_CERT_FILE = /nonexistent/corp.pem\n"
        "SSL_CERT_DIR = /nonexistent/certs\n"
    )
    env["SSL_CERT_FILE"] = certs.ca_file  # what the system source reads

    done = cli(env, "--config-file", str(config), "-c", "prod", "show")

    assert done.returncode == 0, done
    where = f"[prod] in {config}"
    ignored = "ignored: read from the environment only"
    assert done.stdout.splitlines()[3:7] == [
        f"  SSL_VERIFY = system  (set by config, {where})",
        f"  SSL_CERT_FILE = /nonexistent/corp.pem  (set by config, {where}; {ignored})",
        f"  SSL_CERT_FILE = {certs.ca_file}  (set by env)",
        f"  SSL_CERT_DIR = /nonexistent/certs  (set by config, {where}; {ignored})",
    ]
    assert certs.ca_file in done.stdout.splitlines()[-1]  # the source: the env's file


# fetch-chain


def test_fetch_chain_saves_every_presented_certificate(
    env: dict[str, str], certs: Certs, tmp_path: Path
) -> None:
    chain = certs.with_intermediate.pems  # leaf, intermediate; not the root
    with HTTPSServer(certs.with_intermediate.cert, certs.with_intermediate.key) as https:
        saved = cli(env, "fetch-chain", https.url, "-o", "chain.pem", cwd=tmp_path)
        piped = cli(env, "fetch-chain", https.url)

    assert saved.returncode == 0, saved
    assert ders((tmp_path / "chain.pem").read_text()) == ders("".join(chain))
    assert re.findall(r"SHA-256: +(\S+)", saved.stdout) == [fingerprint(p) for p in chain]
    assert "presented 2 certificate(s), NOT verified" in saved.stdout
    for pem in chain:
        cert = x509.load_pem_x509_certificate(pem.encode())
        assert f"subject:    O=trustme v1.2.1, OU={unit(cert.subject)}\n" in saved.stdout
        assert f"issuer:     O=trustme v1.2.1, OU={unit(cert.issuer)}\n" in saved.stdout
    assert "compare the SHA-256 fingerprints" in saved.stdout
    assert "Warning" not in saved.stdout
    assert f"Then: set REQUESTS_CA_BUNDLE={tmp_path / 'chain.pem'}\n" in saved.stdout
    # ... and then it works, without the root CA the server never sent.
    with HTTPSServer(certs.with_intermediate.cert, certs.with_intermediate.key) as https:
        bundle_env = {**env, "REQUESTS_CA_BUNDLE": str(tmp_path / "chain.pem")}
        assert cli(bundle_env, "check", https.url).returncode == 0

    assert piped.returncode == 0, piped
    assert piped.stdout.startswith("-----BEGIN CERTIFICATE-----")
    assert ders(piped.stdout) == ders("".join(chain))
    assert re.findall(r"SHA-256: +(\S+)", piped.stderr) == [fingerprint(p) for p in chain]
    assert "Then: set REQUESTS_CA_BUNDLE=<the saved file>\n" in piped.stderr


def test_fetch_chain_through_an_https_proxy(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer
) -> None:
    env["REQUESTS_CA_BUNDLE"] = certs.ca_file  # verifies the proxy hop
    with HTTPSProxy(certs.good.cert, certs.good.key) as proxy:
        env["HTTPS_PROXY"] = proxy.url
        done = cli(env, "fetch-chain", good_server.url)

    assert done.returncode == 0, done
    # The chain, then whether a public CA (certifi) verifies it: none does.
    assert proxy.log == [f"CONNECT 127.0.0.1:{good_server.port}"] * 2
    assert re.findall(r"SHA-256: +(\S+)", done.stderr) == [fingerprint(certs.good.pems[0])]
    assert f"They came through the proxy {proxy.url} (from the environment)" in done.stderr


def test_fetch_chain_connection_refused(env: dict[str, str]) -> None:
    port = free_port()

    done = cli(env, "fetch-chain", f"https://127.0.0.1:{port}/")

    assert done.returncode == 1, done
    assert done.stderr == f"error: cannot connect to 127.0.0.1:{port}: connection refused\n"


def test_fetch_chain_escapes_names_and_cannot_fake_a_fingerprint(
    env: dict[str, str], tmp_path: Path
) -> None:
    cert, key = hostile_server_files(tmp_path)
    with HTTPSServer(cert, key) as https:
        done = cli(env, "fetch-chain", https.url, "-o", str(tmp_path / "saved.pem"))

    assert done.returncode == 0, done
    assert_escaped(done.stdout)
    assert f"  1. subject:    CN=cmem.example.com, OU={ESCAPED}\n" in done.stdout
    fingerprints = re.findall(r"^ +SHA-256: +(\S+)$", done.stdout, re.M)
    assert fingerprints == [fingerprint(Path(cert).read_text())]


def test_fetch_chain_caps_the_proxy_answer(env: dict[str, str]) -> None:
    def endless_headers(conn: socket.socket, number: int) -> None:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 200_000)
        conn.recv(1)  # until the client hangs up

    with raw_server(endless_headers) as port:
        env["HTTPS_PROXY"] = f"http://127.0.0.1:{port}"
        done = cli(env, "fetch-chain", "https://127.0.0.1:9/")

    assert done.returncode == 1, done
    assert done.stderr == (
        f"error: the proxy http://127.0.0.1:{port} answered CONNECT 127.0.0.1:9 with more than"
        " 64 KiB and no end of its headers\n"
    )


@pytest.mark.parametrize("which", ["expired", "wrong_host", "not_yet_valid"])
def test_fetch_chain_warns_when_trusting_it_will_not_be_enough(
    env: dict[str, str], certs: Certs, tmp_path: Path, which: str
) -> None:
    if which == "not_yet_valid":
        leaf, begins = _not_yet_valid(certs)
        files = _leaf_files(leaf, tmp_path)
        problem = f"is valid only from {begins}"
    else:
        served: Served = getattr(certs, which)
        files = served.cert, served.key
        problem = {
            "expired": "expired 2020-01-01 00:00:00 UTC",
            "wrong_host": "is for example.test, not 127.0.0.1",
        }[which]
    with HTTPSServer(*files) as https:
        done = cli(env, "fetch-chain", https.url, "-o", str(tmp_path / "saved.pem"))

    assert done.returncode == 0, done
    warning = f"Warning: the server's certificate (1.) {problem}: trusting it will not be enough"
    assert [line for line in done.stdout.splitlines() if "Warning" in line] == [warning]


def test_fetch_chain_through_an_intercepting_proxy_does_not_offer_the_file(
    env: dict[str, str], good_server: HTTPSServer, tmp_path: Path
) -> None:
    with ConnectProxy() as proxy:
        env["HTTPS_PROXY"] = proxy.url
        done = cli(env, "fetch-chain", good_server.url, "-o", str(tmp_path / "saved.pem"))

    assert done.returncode == 0, done
    assert "REQUESTS_CA_BUNDLE" not in done.stdout
    assert "Then:" not in done.stdout
    assert done.stdout.splitlines()[-1] == (
        f"They came through the proxy {proxy.url} (from the environment), and no public CA"
        " (certifi) verifies them: a TLS-intercepting proxy presents a certificate it made for"
        " this one host, so this file is not what to trust. Get the proxy's CA certificate from"
        " your network administrators and trust that; or set SSL_VERIFY=system if the operating"
        " system trusts that CA."
    )


def test_fetch_chain_says_when_nothing_is_left_to_set(
    env: dict[str, str], certs: Certs, tmp_path: Path
) -> None:
    env["REQUESTS_CA_BUNDLE"] = certs.ca_file
    with HTTPSServer(certs.good.cert, certs.good.key) as good:
        trusted = cli(env, "fetch-chain", good.url, "-o", str(tmp_path / "a.pem"))
    with HTTPSServer(certs.wrong_host.cert, certs.wrong_host.key) as misnamed:
        ca_known = cli(env, "fetch-chain", misnamed.url, "-o", str(tmp_path / "b.pem"))

    chosen = "the trust source bundle (chosen by REQUESTS_CA_BUNDLE (env))"
    assert trusted.returncode == 0, trusted
    assert trusted.stdout.splitlines()[-1] == f"Then: nothing to set: {chosen} accepts the server"
    assert ca_known.returncode == 0, ca_known
    assert ca_known.stdout.splitlines()[-1] == (
        f"Then: nothing to set for trust: {chosen} trusts its CA"
    )


# demo


def test_demo_shows_each_source_and_leaves_nothing_behind(
    env: dict[str, str], tmp_path: Path
) -> None:
    unused = {
        "SSL_VERIFY": "maybe",
        "REQUESTS_CA_BUNDLE": "/nonexistent.pem",
        "HTTPS_PROXY": f"http://127.0.0.1:{free_port()}",
    }
    env.update(unused)  # the demo looks at no outer setting

    done = cli(env, "demo", cwd=tmp_path)

    assert done.returncode == 0, done
    assert done.stderr == ""
    head = re.search(r"server: (\S+)\nCA certificate: +(\S+) ", done.stdout)
    assert head is not None
    url, ca = head.groups()
    rows = [
        " ".join(DEBUG_STAMP.sub("", line).split())
        for line in done.stdout.splitlines()
        if line.startswith("  ")
    ]
    assert rows == [
        "certifi refused (unable to get local issuer certificate)",
        f"bundle {ca} verified",
        f"with --debug: REQUESTS_CA_BUNDLE set by env to {ca}",
        f"with --debug: CA bundle loaded from {ca}",
        f"with --debug: Mounted TrustAdapter (bundle) on {url}",
        "system refused (unable to get local issuer certificate)",
        f"system + SSL_CERT_FILE={ca} verified",
        "off accepted without verification",
        "warning: SSL verification is disabled (SSL_VERIFY=False).",
    ]
    assert "cmem_adapter.mount(session, url)" in done.stdout
    assert tmp_path in Path(ca).parents
    assert not list(tmp_path.glob("cmem-adapter-demo-*"))


# run

LEGACY_SCRIPT = """\
import sys

import requests

print("argv", sys.argv[1:], "path0", sys.path[0])
response = requests.get(sys.argv[1])
print("status", response.status_code)
if sys.argv[2] == "raise":
    raise RuntimeError("the script failed")
sys.exit(int(sys.argv[2]))
"""


@pytest.fixture
def legacy_script(tmp_path: Path) -> Path:
    script = tmp_path / "scripts" / "legacy.py"
    script.parent.mkdir()
    script.write_text(LEGACY_SCRIPT)
    return script


def test_run_applies_the_policy_to_an_unmodified_script(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer, legacy_script: Path, tmp_path: Path
) -> None:
    env.update(SSL_VERIFY="system", SSL_CERT_FILE=certs.ca_file)
    script = os.path.relpath(legacy_script, tmp_path)

    stock = subprocess.run(
        [sys.executable, script, good_server.url, "3"], env=env, cwd=tmp_path, capture_output=True
    )
    done = cli(env, "run", script, good_server.url, "3", cwd=tmp_path)

    assert b"CERTIFICATE_VERIFY_FAILED" in stock.stderr  # stock requests trusts certifi
    assert done.returncode == 3, done
    assert done.stdout.splitlines() == [
        f"argv ['{good_server.url}', '3'] path0 {legacy_script.parent}",
        "status 200",
    ]


def test_run_script_exception_gives_traceback_and_exit_1(
    env: dict[str, str], certs: Certs, good_server: HTTPSServer, legacy_script: Path
) -> None:
    env["REQUESTS_CA_BUNDLE"] = certs.ca_file

    done = cli(env, "run", str(legacy_script), good_server.url, "raise")

    assert done.returncode == 1, done
    assert "status 200" in done.stdout
    assert done.stderr.startswith("Traceback (most recent call last):")
    assert done.stderr.endswith("RuntimeError: the script failed\n")


def test_run_passes_options_to_the_script(env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "echo.py"
    script.write_text(
        textwrap.dedent(
            """\
            import sys
            print(sys.argv)
            """
        )
    )

    done = cli(env, "--debug", "run", str(script), "--debug", "-h", "-c", "x")
    dashes = cli(env, "run", str(script), "--", "x", "--")
    separated = cli(env, "run", "--", str(script), "--", "x", "--")

    assert done.returncode == 0, done
    assert done.stdout == f"{[str(script), '--debug', '-h', '-c', 'x']}\n"
    assert dashes.returncode == 0, dashes
    assert dashes.stdout == f"{[str(script), '--', 'x', '--']}\n"  # as python passes them
    assert separated.stdout == dashes.stdout


def test_run_with_debug_resolves_the_policy_once(
    env: dict[str, str], certs: Certs, tmp_path: Path
) -> None:
    script = tmp_path / "nothing.py"
    script.write_text("")
    env["REQUESTS_CA_BUNDLE"] = certs.ca_file

    done = cli(env, "--debug", "run", str(script))

    assert done.returncode == 0, done
    lines = [line.split("] ", 1)[1] for line in done.stderr.splitlines()]
    assert lines == [
        f"REQUESTS_CA_BUNDLE set by env to {certs.ca_file}",
        f"CA bundle loaded from {certs.ca_file}",
        "Installed: new sessions mount TrustAdapter (bundle) on https://, http://",
    ]


def test_run_missing_script_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    done = cli(env, "run", "missing.py", cwd=tmp_path)

    assert done.returncode == 2, done
    assert done.stderr == "error: cannot run missing.py: no such file\n"


def test_run_a_directory_as_python_does(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__main__.py").write_text(
        "import sys\nprint(sys.argv[1:], sys.path[0], __name__, __file__)\n"
    )
    (tmp_path / "empty").mkdir()

    stock = subprocess.run(
        [sys.executable, "app/", "x"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    done = cli(env, "run", "app/", "x", cwd=tmp_path)
    empty = cli(env, "run", "empty/", cwd=tmp_path)

    assert done.returncode == 0, done
    assert done.stdout == stock.stdout
    assert done.stdout == f"['x'] {tmp_path}/app/ __main__ {tmp_path}/app/__main__.py\n"
    assert empty.returncode == 1, empty
    assert empty.stderr == "error: can't find '__main__' module in 'empty/'\n"


def _lax_ca_and_server(folder: Path) -> tuple[str, str, str]:
    """Returns (CA file, server chain, key) made the old way: no key identifiers, lax flags."""
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Old Corp CA")])

    def cert(subject: x509.Name, public: object, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=False)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
            )
        return builder.sign(ca_key, hashes.SHA256())

    ca_cert = cert(ca_name, ca_key.public_key(), ca=True)
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    leaf = cert(leaf_name, key.public_key(), ca=False)
    files = folder / "lax-ca.pem", folder / "lax.pem", folder / "lax.key"
    files[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(files[0]), str(files[1]), str(files[2])


@pytest.mark.skipif(sys.version_info < (3, 13), reason="strict X.509 checks are on from 3.13")
def test_check_explains_a_ca_that_fails_strict_checks(env: dict[str, str], tmp_path: Path) -> None:
    ca_file, chain, key = _lax_ca_and_server(tmp_path)
    with HTTPSServer(chain, key, host="localhost") as https:
        result = cli({**env, "REQUESTS_CA_BUNDLE": ca_file}, "check", https.url)
    assert result.returncode == 1
    assert "Why: strict X.509: a certificate in the chain breaks a rule" in result.stdout
    assert "(Missing Authority Key Identifier)" in result.stdout
    assert "Fix: have the certificates reissued" in result.stdout
    assert "fetch-chain" not in result.stdout
