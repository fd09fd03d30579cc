"""Fixtures shared by the tests: a clean environment, fresh library state, trustme CAs."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from servers import HTTPSServer

from cmem_adapter import contexts, policy, uninstall

CLEARED = {
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "SSL_VERIFY",
    "NO_PROXY",
    "SSLKEYLOGFILE",
}


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keeps this machine's CA, proxy and cmemc variables out of every test.

    CI sets REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, SSL_CERT_FILE and SSL_CERT_DIR to the system
    bundle; HOME and XDG_CONFIG_HOME point into the test's own directory so no real cmemc
    config.ini is found.
    """
    for name in list(os.environ):
        upper = name.upper()
        if upper in CLEARED or upper.endswith("_PROXY") or upper.startswith(("CMEM", "OAUTH_")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))


@pytest.fixture(autouse=True)
def no_leak_left_for_later() -> Iterator[None]:
    """Collects garbage after each test: a socket left open fails the test that left it.

    Otherwise its ResourceWarning surfaces in whichever later test the collector runs in.
    """
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def fresh_library_state() -> Iterator[None]:
    """Starts each test with no cached context, no off warning given, nothing installed."""
    contexts._live.clear()
    policy._warned.clear()
    yield
    uninstall()


@pytest.fixture
def ca() -> trustme.CA:
    """Returns a new CA: the one the test's servers are signed by."""
    return trustme.CA()


@pytest.fixture
def other_ca() -> trustme.CA:
    """Returns a second CA, trusted by nothing unless a test says so."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    """Returns the path of a PEM file holding `ca`."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def other_ca_file(other_ca: trustme.CA, tmp_path: Path) -> str:
    """Returns the path of a PEM file holding `other_ca`."""
    path = tmp_path / "other-ca.pem"
    other_ca.cert_pem.write_to_path(str(path))
    return str(path)


def issue_files(ca: trustme.CA, directory: Path, name: str, *hosts: str) -> tuple[str, str]:
    """Returns (certificate chain file, key file) for `hosts`, signed by `ca`."""
    cert = ca.issue_cert(*(hosts or ("127.0.0.1", "localhost")))
    chain, key = directory / f"{name}.pem", directory / f"{name}.key"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    return str(chain), str(key)


@pytest.fixture
def server(ca: trustme.CA, tmp_path: Path) -> Iterator[HTTPSServer]:
    """Returns a running HTTPS server signed by `ca`."""
    with HTTPSServer(*issue_files(ca, tmp_path, "server"), name="server") as running:
        yield running


@pytest.fixture
def rogue_server(other_ca: trustme.CA, tmp_path: Path) -> Iterator[HTTPSServer]:
    """Returns a running HTTPS server signed by `other_ca`: any policy here should refuse it."""
    with HTTPSServer(*issue_files(other_ca, tmp_path, "rogue"), name="rogue") as running:
        yield running
