"""The system source on Linux: truststore's trust decisions, without truststore's lock.

On Linux the ``system`` source loads the files truststore would use into a plain context
once (DESIGN §1). These tests hold it to that: for each setting of ``SSL_CERT_FILE`` and
``SSL_CERT_DIR``, a `TrustAdapter` and a `truststore.SSLContext` accept and refuse the same
servers.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import requests
import trustme
import truststore
from conftest import issue_files
from servers import HTTPSServer

from cmem_adapter import ConfigError, TrustAdapter, TrustPolicy
from cmem_adapter.contexts import live_context

pytestmark = pytest.mark.skipif(
    sys.platform in ("darwin", "win32"), reason="there the system source is truststore itself"
)


class Lab(NamedTuple):
    servers: dict[str, HTTPSServer]
    paths: dict[str, str]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Servers of CAs A, B and C, and CA files and directories to point the variables at."""
    tmp = tmp_path_factory.mktemp("system-store")
    a, b, c = trustme.CA(), trustme.CA(), trustme.CA()
    intermediate = a.create_child_ca()
    paths = {
        "A": tmp / "a.pem",
        "A and B": tmp / "a-and-b.pem",
        "intermediate of A": tmp / "intermediate.pem",
        "B, hashed": tmp / "hashed",
        "B, not hashed": tmp / "not-hashed",
        "empty directory": tmp / "empty",
    }
    a.cert_pem.write_to_path(str(paths["A"]))
    paths["A and B"].write_bytes(a.cert_pem.bytes() + b.cert_pem.bytes())
    intermediate.cert_pem.write_to_path(str(paths["intermediate of A"]))
    for directory in ("B, hashed", "B, not hashed", "empty directory"):
        paths[directory].mkdir()
    b.cert_pem.write_to_path(str(paths["B, hashed"] / "b.pem"))
    b.cert_pem.write_to_path(str(paths["B, not hashed"] / "b.pem"))
    subprocess.run(["openssl", "rehash", str(paths["B, hashed"])], check=True)
    keys = tmp / "servers"
    keys.mkdir()
    issued = {
        "A": issue_files(a, keys, "a"),
        "A via intermediate": issue_files(intermediate, keys, "a-via-intermediate"),
        "A, wrong name": issue_files(a, keys, "a-wrong-name", "other.example"),
        "B": issue_files(b, keys, "b"),
        "C": issue_files(c, keys, "c"),
    }
    servers = {name: HTTPSServer(*files, name=name) for name, files in issued.items()}
    for server in servers.values():
        server.start()
    yield Lab(servers, {name: str(path) for name, path in paths.items()})
    for server in servers.values():
        server.stop()


A = {"A", "A via intermediate"}

SETUPS: dict[str, tuple[dict[str, str], set[str]]] = {
    # setup: (variable -> lab path, servers accepted)
    "distribution defaults": ({}, set()),
    "SSL_CERT_FILE only": ({"SSL_CERT_FILE": "A"}, A),
    "SSL_CERT_DIR only, hashed": ({"SSL_CERT_DIR": "B, hashed"}, {"B"}),
    "both, B only in the directory": (
        {"SSL_CERT_FILE": "A", "SSL_CERT_DIR": "B, hashed"},
        A | {"B"},
    ),
    "B in a directory without hash names": (
        {"SSL_CERT_FILE": "A", "SSL_CERT_DIR": "B, not hashed"},
        A,
    ),
    "two CAs in the file, empty directory": (
        {"SSL_CERT_FILE": "A and B", "SSL_CERT_DIR": "empty directory"},
        A | {"B"},
    ),
    "only an intermediate in the file": (
        {"SSL_CERT_FILE": "intermediate of A", "SSL_CERT_DIR": "empty directory"},
        set(),
    ),
    "empty SSL_CERT_DIR only": ({"SSL_CERT_DIR": "empty directory"}, set()),
}


def adapter_accepts(session: requests.Session, server: HTTPSServer) -> bool:
    try:
        session.get(server.url, timeout=10)
    except requests.exceptions.SSLError as e:
        # urllib3 1.26 matches names itself: "hostname '127.0.0.1' doesn't match 'x'".
        assert any(s in str(e) for s in ("CERTIFICATE_VERIFY_FAILED", "doesn't match")), e
        return False
    return True


def truststore_accepts(context: ssl.SSLContext, server: HTTPSServer) -> bool:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        try:
            context.wrap_socket(sock, server_hostname=server.host).close()
        except ssl.SSLCertVerificationError:
            return False
    return True


@pytest.mark.parametrize("setup", SETUPS)
def test_system_source_accepts_and_refuses_what_truststore_does(
    setup: str, lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    variables, expected = SETUPS[setup]
    monkeypatch.setenv("SSL_VERIFY", "system")
    for variable, path in variables.items():
        monkeypatch.setenv(variable, lab.paths[path])
    session = requests.Session()
    session.mount("https://", TrustAdapter())  # the policy from the environment
    ours = {name for name, server in lab.servers.items() if adapter_accepts(session, server)}
    # truststore reads SSL_CERT_FILE and SSL_CERT_DIR again on every handshake.
    context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    theirs = {name for name, server in lab.servers.items() if truststore_accepts(context, server)}
    assert ours == theirs
    assert ours == expected  # so that "equal" is not "both refuse everything"


def test_distribution_defaults_load_the_cas_truststore_loads() -> None:
    """With no variable set, the same CA certificates as OpenSSL's default paths.

    truststore calls `set_default_verify_paths()` when OpenSSL's default file exists or its
    directory holds hash-named files (truststore/_openssl.py), as on Debian and Ubuntu.
    """
    defaults = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    defaults.set_default_verify_paths()
    ours = live_context(TrustPolicy.system()).current()
    assert sorted(map(repr, ours.get_ca_certs())) == sorted(map(repr, defaults.get_ca_certs()))


def test_system_handshakes_are_not_serialised_across_threads(
    ca: trustme.CA, ca_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 threads, a server that waits before each handshake: about one wait, not eight.

    truststore 0.10.5 holds one lock per context across the handshake (eight waits).
    """
    delay, threads = 0.4, 8
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    session = requests.Session()
    session.mount("https://", TrustAdapter(TrustPolicy.system()))
    barrier = threading.Barrier(threads)
    statuses: list[int] = []
    with HTTPSServer(*issue_files(ca, tmp_path, "slow"), handshake_delay=delay) as slow:

        def fetch() -> None:
            barrier.wait()
            statuses.append(session.get(slow.url, timeout=30).status_code)

        workers = [threading.Thread(target=fetch) for _ in range(threads)]
        started = time.monotonic()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.monotonic() - started
    assert statuses == [200] * threads
    assert slow.handshakes == threads
    serial = threads * delay
    assert elapsed < serial / 2, f"{threads} handshakes took {elapsed:.2f} s: serialised?"


@pytest.mark.parametrize(
    "content", [b"", b"not a certificate\n", b"-----BEGIN CERTIFICATE-----\nMIIB"]
)
def test_unloadable_ssl_cert_file_is_a_config_error(content: bytes, tmp_path: Path) -> None:
    """OpenSSL's own error (ssl.SSLError) would reach the caller at request time otherwise."""
    path = tmp_path / "system.pem"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"{path}.* cannot be loaded .*Fix: "):
        TrustPolicy.from_env({"SSL_VERIFY": "system", "SSL_CERT_FILE": str(path)})


def test_missing_ssl_cert_dir_is_a_config_error(tmp_path: Path) -> None:
    """truststore would silently trust the distribution's store instead."""
    missing = str(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"SSL_CERT_DIR set by env to .*OpenSSL would silently"):
        TrustPolicy.from_env({"SSL_VERIFY": "system", "SSL_CERT_DIR": missing})


def test_ssl_cert_dir_may_list_directories_and_paths_may_have_spaces(
    tmp_path: Path, ca: trustme.CA, other_ca: trustme.CA
) -> None:
    """As for OpenSSL: SSL_CERT_DIR="a:b" trusts the CAs of both; a missing one is an error."""
    first, second = tmp_path / "first dir", tmp_path / "second dir"
    for folder, authority in ((first, ca), (second, other_ca)):
        folder.mkdir()
        authority.cert_pem.write_to_path(str(folder / "ca.pem"))
        subprocess.run(["openssl", "rehash", str(folder)], check=True, capture_output=True)
    third = tmp_path / "third ca.pem"
    trustme.CA().cert_pem.write_to_path(str(third))
    env = {
        "SSL_VERIFY": "system",
        "SSL_CERT_FILE": str(third),
        "SSL_CERT_DIR": f"{first}{os.pathsep}{second}",
    }
    policy = TrustPolicy.from_env(env)
    assert policy.system_store is not None
    assert policy.system_store.dirs() == [str(first), str(second)]
    assert policy.system_store.cafile == str(third)
    session = requests.Session()
    session.mount("https://", TrustAdapter(policy))
    for name, authority in (("one", ca), ("two", other_ca)):
        with HTTPSServer(*issue_files(authority, tmp_path, name)) as server:
            assert session.get(server.url, timeout=10).ok
    with pytest.raises(ConfigError, match=r"no such directory: .*missing"):
        TrustPolicy.from_env({**env, "SSL_CERT_DIR": f"{first}{os.pathsep}{tmp_path / 'missing'}"})
