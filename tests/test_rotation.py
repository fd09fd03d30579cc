"""CA files replaced on disk: new trust within about a second, no restart, never unverified.

Each test starts with CA A in the file and two servers, one per CA, then replaces the file
(see `cafiles`) and watches which server new connections accept.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import requests
import trustme
from cafiles import WRITERS, publish
from conftest import issue_files
from servers import HTTPSServer

from cmem_adapter import ConfigError, TrustAdapter, TrustPolicy, contexts

TARGETS = ("bundle file", "bundle directory", "SSL_CERT_FILE")
PROMISED = 1.0
"""Seconds within which new connections trust a replaced file (DESIGN §5, rule 9)."""


class Servers(NamedTuple):
    a: HTTPSServer
    b: HTTPSServer
    a_pem: bytes
    b_pem: bytes


@pytest.fixture
def servers(ca: trustme.CA, other_ca: trustme.CA, tmp_path: Path) -> Iterator[Servers]:
    """Returns a server of CA A (`ca`) and one of CA B (`other_ca`), with both CAs' PEM."""
    with (
        HTTPSServer(*issue_files(ca, tmp_path, "a"), name="a") as a,
        HTTPSServer(*issue_files(other_ca, tmp_path, "b"), name="b") as b,
    ):
        yield Servers(a, b, ca.cert_pem.bytes(), other_ca.cert_pem.bytes())


def policy_for(target: str, directory: Path, tmp_path: Path) -> TrustPolicy:
    """Returns a policy trusting ``directory/ca.pem`` (or the directory) as `target` says."""
    if target == "bundle file":
        return TrustPolicy.bundle(directory / "ca.pem")
    if target == "bundle directory":
        return TrustPolicy.bundle(directory)
    no_certs = tmp_path / "no-certs"  # so that SSL_CERT_FILE alone decides
    no_certs.mkdir(exist_ok=True)
    return TrustPolicy.from_env(
        {
            "SSL_VERIFY": "system",
            "SSL_CERT_FILE": str(directory / "ca.pem"),
            "SSL_CERT_DIR": str(no_certs),
        }
    )


def session_for(policy: TrustPolicy) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.mount("https://", TrustAdapter(policy))
    return session


def accepts(session: requests.Session, server: HTTPSServer) -> bool:
    """Tells whether a request on a new connection to `server` gets through; False if refused.

    Connections kept alive from before a reload may finish on the old trust (documented), so
    each check closes them first; the session and its adapter stay as they are.
    """
    session.close()
    try:
        response = session.get(server.url, timeout=10)
    except requests.exceptions.SSLError as e:
        assert "CERTIFICATE_VERIFY_FAILED" in str(e), e
        return False
    assert response.json()["server"] == server.name
    return True


def seconds_until_accepted(session: requests.Session, server: HTTPSServer) -> float:
    started = time.monotonic()
    while not accepts(session, server):
        assert time.monotonic() - started < 10, f"{server.name} still refused after 10 s"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.parametrize("how", WRITERS)
@pytest.mark.parametrize("target", TARGETS)
def test_replaced_ca_is_trusted_by_new_connections_within_a_second(
    target: str, how: str, servers: Servers, tmp_path: Path
) -> None:
    directory = tmp_path / "mounted"
    publish(how, directory, servers.a_pem)
    inode = os.stat(directory / "ca.pem").st_ino
    session = session_for(policy_for(target, directory, tmp_path))
    assert accepts(session, servers.a)
    assert not accepts(session, servers.b)

    publish(how, directory, servers.b_pem)
    assert (os.stat(directory / "ca.pem").st_ino == inode) is (how == "rewrite")
    assert seconds_until_accepted(session, servers.b) < PROMISED + 1.0  # generous margin
    assert not accepts(session, servers.a)


def test_a_file_added_to_or_removed_from_a_bundle_directory_is_noticed(
    servers: Servers, tmp_path: Path
) -> None:
    directory = tmp_path / "cas"
    directory.mkdir()
    (directory / "a.pem").write_bytes(servers.a_pem)
    session = session_for(TrustPolicy.bundle(directory))
    assert not accepts(session, servers.b)

    (directory / "b.pem").write_bytes(servers.b_pem)
    assert seconds_until_accepted(session, servers.b) < PROMISED + 1.0
    assert accepts(session, servers.a)

    (directory / "a.pem").unlink()
    started = time.monotonic()
    while accepts(session, servers.a):
        assert time.monotonic() - started < PROMISED + 1.0, "a removed CA is still trusted"
        time.sleep(0.05)
    assert accepts(session, servers.b)


BROKEN: dict[str, Callable[[bytes], bytes]] = {
    "half-written": lambda pem: pem[: len(pem) // 2],
    "emptied": lambda pem: b"",
}


@pytest.mark.parametrize("damage", [*BROKEN, "deleted", "FIFO"])
@pytest.mark.parametrize("target", TARGETS)
def test_broken_replacement_keeps_the_last_good_cas_and_logs_one_error(
    target: str,
    damage: str,
    servers: Servers,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A shorter interval shows "one error, not one per check" over many checks.
    monkeypatch.setattr(contexts, "CHECK_INTERVAL", 0.2)
    directory = tmp_path / "mounted"
    publish("rewrite", directory, servers.a_pem)
    session = session_for(policy_for(target, directory, tmp_path))
    assert accepts(session, servers.a)

    if damage in ("deleted", "FIFO"):
        (directory / "ca.pem").unlink()
        if damage == "FIFO":  # reading it would block the refresh for ever
            os.mkfifo(directory / "ca.pem")
    else:
        publish("rewrite", directory, BROKEN[damage](servers.b_pem))
    caplog.clear()
    deadline = time.monotonic() + 8 * contexts.CHECK_INTERVAL
    while time.monotonic() < deadline:  # every request verified, against CA A
        assert accepts(session, servers.a)
        assert not accepts(session, servers.b)
        time.sleep(0.02)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].name == "cmem_adapter"
    assert str(directory) in errors[0].getMessage()
    assert "keeping the CAs loaded before" in errors[0].getMessage()

    (directory / "ca.pem").unlink(missing_ok=True)
    publish("rewrite", directory, servers.b_pem)  # the writer finishes
    assert seconds_until_accepted(session, servers.b) < PROMISED + 1.0
    assert not accepts(session, servers.a)
    assert "Reloaded" in caplog.text


def test_files_are_looked_at_once_per_interval_not_per_request(
    servers: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts stat() calls on the bundle file (a wrapper of os.stat, not of any TLS part)."""
    directory = tmp_path / "mounted"
    publish("rename", directory, servers.a_pem)
    bundle = str(directory / "ca.pem")
    session = session_for(TrustPolicy.bundle(bundle))
    stats: list[float] = []
    real_stat = os.stat

    def counting_stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if path == bundle:
            stats.append(time.monotonic())
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    started = time.monotonic()
    with monkeypatch.context() as patched:
        patched.setattr(os, "stat", counting_stat)
        for number in range(60):  # half on kept-alive connections, half on new ones
            if number % 2:
                session.close()
            assert session.get(servers.a.url, timeout=10).ok
    elapsed = time.monotonic() - started
    assert servers.a.handshakes >= 30
    assert len(stats) < 60 / 10, stats  # not per request, nor per connection, but ...
    interval = contexts.CHECK_INTERVAL
    assert len(stats) * interval <= elapsed + interval, (stats, elapsed)  # ... per interval


def test_a_new_policy_over_a_broken_file_is_refused_while_running_ones_keep_the_last_good(
    servers: Servers, tmp_path: Path
) -> None:
    """Equal policies share a context; building one must still look at the file as it is now."""
    bundle = tmp_path / "mounted" / "ca.pem"
    publish("rewrite", bundle.parent, servers.a_pem)
    session = session_for(TrustPolicy.bundle(bundle))
    assert accepts(session, servers.a)
    publish("rewrite", bundle.parent, b"not a certificate\n")
    with pytest.raises(ConfigError, match="is not PEM"):
        TrustPolicy.bundle(bundle)
    assert accepts(session, servers.a)
    assert not accepts(session, servers.b)
