"""The drop-in under the real, unmodified cmem-cmempy client, against a loopback stand-in for CMEM.

cmempy reads its settings from the environment at each call and passes ``verify=False`` when
``SSL_VERIFY`` is "false" (any case), else ``verify=True``: requests then swaps in
``REQUESTS_CA_BUNDLE``, which the adapter leaves to its policy. ``SSL_VERIFY=system`` is just
"true" to cmempy. These tests skip where cmem-cmempy is not installed, except under
``REQUIRE_CMEMPY=1`` (the ``cmempy`` nox session), where they must run.
"""

from __future__ import annotations

import importlib
import json
import os
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pytest
import requests
import trustme
from children import REPO, child_env, run
from conftest import issue_files
from servers import server_tls_context

from cmem_adapter import install


def _cmempy() -> ModuleType:
    if os.environ.get("REQUIRE_CMEMPY") == "1":
        return importlib.import_module("cmem.cmempy.health")
    found: ModuleType = pytest.importorskip(
        "cmem.cmempy.health", reason="needs cmem-cmempy: nox -s cmempy"
    )
    return found


health = _cmempy()

TOKEN = "stub-access-token"
TOKEN_PATH = "/auth/realms/cmem/protocol/openid-connect/token"
INFO_PATH = "/dataplatform/actuator/info"
INFO = {"version": "v25.3.0-stub"}


class CmemStub(ThreadingHTTPServer):
    """HTTPS on 127.0.0.1: Keycloak's token endpoint, and DataPlatform's info for the token.

    ``seen`` holds "METHOD path" for each request that got past the TLS handshake.
    """

    daemon_threads = True

    def __init__(self, cert: str, key: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.socket = server_tls_context(cert, key).wrap_socket(self.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server_address[1]}"
        self.seen: list[str] = []

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # without HTTPServer's reverse DNS lookup


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(TOKEN_PATH, {"access_token": TOKEN, "token_type": "bearer"})

    def do_GET(self) -> None:
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            self._answer(INFO_PATH, INFO)
        else:
            self._answer("", {})

    def _answer(self, path: str, answer: dict[str, str]) -> None:
        cast(CmemStub, self.server).seen.append(f"{self.command} {self.path}")
        body = json.dumps(answer).encode()
        self.send_response(200 if self.path == path else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def stub(ca: trustme.CA, tmp_path: Path) -> Iterator[CmemStub]:
    server = CmemStub(*issue_files(ca, tmp_path, "cmem"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


@pytest.fixture
def cmem_env(stub: CmemStub, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Sets (and returns) what a cmempy script is given: the server and a prefetched token."""
    settings = {
        "CMEM_BASE_URI": stub.url,
        "OAUTH_GRANT_TYPE": "prefetched_token",
        "OAUTH_ACCESS_TOKEN": TOKEN,
        "CMEMPY_IS_CHATTY": "false",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return settings


@pytest.mark.parametrize("as_directory", [False, True], ids=["file", "directory"])
def test_the_servers_ca_as_requests_ca_bundle(
    as_directory: bool,
    cmem_env: dict[str, str],
    stub: CmemStub,
    ca_file: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = Path(ca_file)
    if as_directory:  # not hashed: OpenSSL's capath, which requests would use, cannot read it
        bundle = tmp_path / "cas"
        bundle.mkdir()
        (bundle / "cmem.pem").write_bytes(Path(ca_file).read_bytes())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))

    install()

    assert health.get_dp_info() == INFO
    assert stub.seen == [f"GET {INFO_PATH}"]


def test_ssl_verify_system_trusts_ssl_cert_file(
    cmem_env: dict[str, str], stub: CmemStub, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_VERIFY", "system")
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    with pytest.raises(requests.exceptions.SSLError):
        health.get_dp_info()  # to cmempy, "system" means verify=True: certifi

    install()

    assert health.get_dp_info() == INFO


def test_the_default_refuses(cmem_env: dict[str, str], stub: CmemStub) -> None:
    install()

    with pytest.raises(requests.exceptions.SSLError):
        health.get_dp_info()
    assert stub.seen == []


def test_the_token_request_is_verified_by_the_adapter_too(
    cmem_env: dict[str, str], stub: CmemStub, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTH_GRANT_TYPE", "client_credentials")
    monkeypatch.setenv("SSL_VERIFY", "system")
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)

    install()

    assert health.get_dp_info() == INFO
    assert stub.seen == [f"POST {TOKEN_PATH}", f"GET {INFO_PATH}"]


def test_the_cmemc_connection_beats_the_machines_requests_ca_bundle(
    cmem_env: dict[str, str],
    stub: CmemStub,
    ca_file: str,
    other_ca_file: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "config.ini"
    config.write_text(
        f"[cmem]\nCMEM_BASE_URI = {stub.url}\nREQUESTS_CA_BUNDLE = {ca_file}\n\n"
        f"[other]\nCMEM_BASE_URI = https://other.example\n"
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", other_ca_file)  # cmempy sends it as verify=
    monkeypatch.setenv("CMEMC_CONFIG_FILE", str(config))
    monkeypatch.setenv("CMEMC_CONNECTION", "cmem")

    install()

    assert health.get_dp_info() == INFO


def test_cmem_adapter_run_gives_an_unmodified_cmempy_script_the_trust(
    cmem_env: dict[str, str], stub: CmemStub, ca_file: str, tmp_path: Path
) -> None:
    script = tmp_path / "info.py"
    script.write_text("from cmem.cmempy import health\n\nprint(health.get_dp_info()['version'])\n")
    env = child_env(tmp_path, **cmem_env, SSL_VERIFY="system", SSL_CERT_FILE=ca_file)
    env["PYTHONPATH"] = str(REPO)

    stock = run(env, script)
    done = run(env, "-m", "cmem_adapter", "run", script)

    assert "CERTIFICATE_VERIFY_FAILED" in stock.stderr
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{INFO['version']}\n", "")
