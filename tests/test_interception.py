"""Through a real TLS-intercepting proxy (mitmproxy's mitmdump), set up the way containers are.

This is the case behind most "certificate verify failed" reports: HTTPS_PROXY names a
corporate proxy that re-signs every site with its own CA. Each source must say yes or no to
that CA as it says it would, and the proxy password must never be shown.

mitmdump runs under its own interpreter, from a virtual environment that the first test
session creates in ``.nox/mitmproxy-<version>`` (about 10-30 s once; later sessions reuse it).
If it cannot be installed the tests fail. Offline, set ``CMEM_ADAPTER_SKIP_MITMPROXY=1`` to
skip them, or ``CMEM_ADAPTER_MITMDUMP=/path/to/mitmdump`` to use one already installed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import pytest
import requests
import trustme
from conftest import issue_files
from servers import HTTPSServer

from cmem_adapter import mount
from cmem_adapter.policy import OFF_WARNING

MITMPROXY = "mitmproxy==11.0.2"
"""Supports Python 3.10-3.13, whichever of them creates the virtual environment."""

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "cmem", "s3cret!Pa55"
QUOTED_PASSWORD = quote(PASSWORD, safe="")


@pytest.fixture(scope="session")
def mitmdump() -> str:
    """Returns the path of mitmdump, installing mitmproxy into a cached venv the first time."""
    if os.environ.get("CMEM_ADAPTER_SKIP_MITMPROXY"):
        pytest.skip("CMEM_ADAPTER_SKIP_MITMPROXY is set")
    given = os.environ.get("CMEM_ADAPTER_MITMDUMP")
    if given:
        return given
    import fcntl  # CI and the tests of this module are Linux only

    venv = ROOT / ".nox" / MITMPROXY.replace("==", "-")
    executable = venv / "bin" / "mitmdump"
    venv.parent.mkdir(exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time
        if _runs(executable):
            return str(executable)
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", MITMPROXY],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                pytest.fail(
                    f"cannot install {MITMPROXY} for the interception tests: {' '.join(step)}"
                    f" exited {done.returncode}\n{done.stdout[-3000:]}{done.stderr[-3000:]}\n"
                    "Offline, set CMEM_ADAPTER_SKIP_MITMPROXY=1 to skip these tests."
                )
    if not _runs(executable):
        pytest.fail(f"{executable} was installed but does not run")
    return str(executable)


def _runs(executable: Path) -> bool:
    if not executable.exists():
        return False
    done = subprocess.run([str(executable), "--version"], capture_output=True, timeout=120)
    return done.returncode == 0


class Interceptor(NamedTuple):
    url: str
    """http://user:password@127.0.0.1:port, as HTTPS_PROXY holds it."""
    ca_file: str
    """mitmproxy's CA certificate: what the corporate IT hands out."""
    log: Path


class Origin(NamedTuple):
    server: HTTPSServer
    ca_file: str


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    """A loopback HTTPS server behind the proxy, with a CA of its own."""
    tmp = tmp_path_factory.mktemp("origin")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "origin-ca.pem"))
    with HTTPSServer(*issue_files(ca, tmp, "origin"), name="origin") as server:
        yield Origin(server, str(tmp / "origin-ca.pem"))


@pytest.fixture(scope="module")
def interceptor(
    mitmdump: str, origin: Origin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Interceptor]:
    """Runs mitmdump on loopback with proxy authentication; it trusts only our origin's CA."""
    confdir = tmp_path_factory.mktemp("mitmproxy")
    log = confdir / "mitmdump.log"
    command = [
        mitmdump,
        "--listen-host=127.0.0.1",
        "--listen-port=0",
        f"--proxyauth={USER}:{PASSWORD}",
        f"--set=confdir={confdir}",  # its CA is created here, not in ~/.mitmproxy
        f"--set=ssl_verify_upstream_trusted_ca={origin.ca_file}",
    ]
    environ = {"PATH": os.environ.get("PATH", ""), "HOME": str(confdir), "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, env=environ, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        port = _listening_port(process, log)
        ca_file = confdir / "mitmproxy-ca-cert.pem"
        assert ca_file.exists(), log.read_text()
        yield Interceptor(f"http://{USER}:{QUOTED_PASSWORD}@127.0.0.1:{port}", str(ca_file), log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _listening_port(process: subprocess.Popen[bytes], log: Path) -> int:
    """Waits for mitmdump's "proxy listening at 127.0.0.1:PORT" line, then for the port."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"listening at 127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if found:
            port = int(found.group(1))
            with socket.create_connection(("127.0.0.1", port), timeout=10):
                return port
        if process.poll() is not None:
            pytest.fail(f"mitmdump exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.1)
    pytest.fail(f"mitmdump did not listen within 60 s:\n{log.read_text()}")


@pytest.fixture
def container_proxy(interceptor: Interceptor, monkeypatch: pytest.MonkeyPatch) -> Interceptor:
    """Sets HTTPS_PROXY and https_proxy to the interceptor, as container images do."""
    monkeypatch.setenv("HTTPS_PROXY", interceptor.url)
    monkeypatch.setenv("https_proxy", interceptor.url)
    return interceptor


def assert_password_not_shown(caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    """Checks every log record (of any logger) and every text for the password, in any form."""
    shown = [record.getMessage() for record in caplog.records] + list(texts)
    for text in shown:
        assert PASSWORD not in text and QUOTED_PASSWORD not in text, text


def error_text(error: BaseException) -> str:
    """Returns the exception as a traceback would show it, causes and contexts included."""
    return "".join(traceback.format_exception(error))


SOURCES = {
    # name: (environment, with "mitm" standing for the proxy's CA file, accepted)
    "certifi": ({}, False),
    "bundle with the proxy's CA": ({"REQUESTS_CA_BUNDLE": "mitm"}, True),
    "system with SSL_CERT_FILE holding the proxy's CA": (
        {"SSL_VERIFY": "system", "SSL_CERT_FILE": "mitm"},
        True,
    ),
    "off": ({"SSL_VERIFY": "false"}, True),
    "bundle with the origin's own CA": ({"REQUESTS_CA_BUNDLE": "origin"}, False),
}


@pytest.mark.parametrize("source", SOURCES)
def test_each_source_through_an_intercepting_proxy(
    source: str,
    container_proxy: Interceptor,
    origin: Origin,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    environment, accepted = SOURCES[source]
    files = {"mitm": container_proxy.ca_file, "origin": origin.ca_file}
    for variable, value in environment.items():
        monkeypatch.setenv(variable, files.get(value, value))
    for _ in range(3):  # three sessions, as three runs of a script in the container would
        session = requests.Session()
        mount(session, origin.server.url)  # the policy from the environment
        if accepted:
            # filterwarnings=error: an InsecureRequestWarning for "off" would fail here.
            assert session.get(origin.server.url, timeout=30).json()["server"] == "origin"
        else:
            with pytest.raises(requests.exceptions.SSLError) as refused:
                session.get(origin.server.url, timeout=30)
            assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
            assert_password_not_shown(caplog, error_text(refused.value))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ([OFF_WARNING] if source == "off" else [])
    proxy = container_proxy.url.replace(f"{USER}:{QUOTED_PASSWORD}@", "")
    assert f"Using proxy {proxy}" in caplog.messages  # the line that could have shown it
    assert_password_not_shown(caplog)


# urllib3#3374: a CONNECT refused with 407 leaves its socket open (Python <= 3.10).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_wrong_proxy_password_is_not_shown_either(
    interceptor: Interceptor,
    origin: Origin,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "Wr0ng!pass"
    monkeypatch.setenv("HTTPS_PROXY", interceptor.url.replace(QUOTED_PASSWORD, quote(wrong)))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", interceptor.ca_file)
    session = requests.Session()
    mount(session, origin.server.url)
    with pytest.raises(requests.exceptions.ProxyError) as refused:
        session.get(origin.server.url, timeout=30)
    assert "407" in str(refused.value)
    shown = [error_text(refused.value), *caplog.messages]
    assert not [text for text in shown if wrong in text or quote(wrong) in text]


def test_check_says_the_certificate_is_the_intercepting_proxys(
    container_proxy: Interceptor, origin: Origin, tmp_path: Path
) -> None:
    """`cmem-adapter check` behind the proxy: the proxy's doing, named without its password."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().endswith(("CA_BUNDLE", "_CERT_FILE", "_CERT_DIR"))
    }
    env |= {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "cmem_adapter", "check", origin.server.url]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1, refused
    out = refused.stdout
    assert "mitmproxy" in out  # the issuer presented is the proxy's CA, shown as such
    assert "looks like it was presented by a TLS-intercepting proxy" in out
    assert "through the proxy http://127.0.0.1:" in out  # without its user and password
    assert PASSWORD not in out + refused.stderr and QUOTED_PASSWORD not in out + refused.stderr
    env["REQUESTS_CA_BUNDLE"] = container_proxy.ca_file  # what the note tells the user to do
    accepted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert accepted.returncode == 0, accepted
    assert "OK: HTTP 200" in accepted.stdout
