"""Self-tests for the loopback servers in ``tests/servers.py``, driven by stock requests."""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
import trustme
from servers import ConnectProxy, HTTPServer, HTTPSProxy, HTTPSServer

ENV_VARS = (
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


@dataclass(frozen=True)
class Certs:
    """PEM files written by trustme."""

    ca: str
    cert: str
    key: str
    other_ca: str
    client_ca: str
    client_cert: str


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop CA-bundle and proxy variables so only explicit test settings apply."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """One CA for origins and proxies, an unrelated CA, and a client CA + client cert."""
    root = tmp_path_factory.mktemp("certs")
    ca, other_ca, client_ca = trustme.CA(), trustme.CA(), trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    client = client_ca.issue_cert("client@example.org", common_name="test-client")

    def write(blob: trustme.Blob, name: str) -> str:
        path = root / name
        blob.write_to_path(str(path))
        return str(path)

    cert_path = root / "cert.pem"
    for blob in leaf.cert_chain_pems:
        blob.write_to_path(str(cert_path), append=True)
    return Certs(
        ca=write(ca.cert_pem, "ca.pem"),
        cert=str(cert_path),
        key=write(leaf.private_key_pem, "key.pem"),
        other_ca=write(other_ca.cert_pem, "other-ca.pem"),
        client_ca=write(client_ca.cert_pem, "client-ca.pem"),
        client_cert=write(client.private_key_and_cert_chain_pem, "client.pem"),
    )


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_direct_https_get(certs: Certs, session: requests.Session, host: str) -> None:
    with HTTPSServer(certs.cert, certs.key, host=host) as srv:
        assert srv.url == f"https://{host}:{srv.port}/"
        r = session.get(srv.url + "hello?x=1", verify=certs.ca, headers={"X-Test": "1"})
        assert r.status_code == 200
        assert r.json() == {"ok": True, "path": "/hello?x=1", "server": "https"}
        path, headers = srv.requests[0]
        assert path == "/hello?x=1"
        assert headers["X-Test"] == "1"
        assert srv.handshakes == 1
        assert srv.client_cert_subjects == [None]


def test_wrong_ca_fails_and_is_recorded(certs: Certs, session: requests.Session) -> None:
    with HTTPSServer(certs.cert, certs.key) as srv:
        with pytest.raises(requests.exceptions.SSLError):
            session.get(srv.url, verify=certs.other_ca)
        deadline = time.monotonic() + 5
        while not srv.errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.handshakes == 0
        assert srv.requests == []
        assert srv.errors and isinstance(srv.errors[0], (ssl.SSLError, OSError))


def test_keep_alive_reuses_one_handshake(certs: Certs, session: requests.Session) -> None:
    with HTTPSServer(certs.cert, certs.key) as srv:
        for i in range(3):
            assert session.get(f"{srv.url}{i}", verify=certs.ca).json()["path"] == f"/{i}"
        assert (srv.handshakes, srv.connections) == (1, 1)
        with requests.Session() as other:
            other.get(srv.url, verify=certs.ca)
        assert (srv.handshakes, srv.connections) == (2, 2)
        srv.reset()
        assert (srv.handshakes, srv.connections, srv.requests) == (0, 0, [])


def test_methods_and_redirect(certs: Certs, session: requests.Session) -> None:
    with HTTPSServer(certs.cert, certs.key, name="origin") as srv:
        r = session.post(srv.url + "p", data=b"x" * 100_000, verify=certs.ca)
        assert r.json() == {"ok": True, "path": "/p", "server": "origin"}
        r = session.post(srv.url + "c", data=iter([b"a", b"b"]), verify=certs.ca)  # chunked
        assert r.json()["path"] == "/c"
        r = session.head(srv.url + "h", verify=certs.ca)
        assert r.status_code == 200 and r.content == b""
        assert int(r.headers["Content-Length"]) > 0
        r = session.get(srv.url + f"redirect?to={srv.url}final", verify=certs.ca)
        assert [h.status_code for h in r.history] == [302]
        assert r.json()["path"] == "/final"
        assert [p for p, _ in srv.requests][-2:] == [f"/redirect?to={srv.url}final", "/final"]
        assert srv.handshakes == 1


def test_https_via_connect_proxy(certs: Certs, session: requests.Session) -> None:
    with HTTPSServer(certs.cert, certs.key) as srv, ConnectProxy() as proxy:
        proxies = {"https": proxy.url}
        for path in ("a", "b"):
            r = session.get(srv.url + path, verify=certs.ca, proxies=proxies)
            assert r.json()["path"] == f"/{path}"
        assert proxy.log == [f"CONNECT 127.0.0.1:{srv.port}"]  # tunnel kept alive
        assert (srv.handshakes, proxy.handshakes, proxy.auth_headers) == (1, 0, [])


def test_http_via_connect_proxy(session: requests.Session) -> None:
    with HTTPServer(host="localhost") as srv, ConnectProxy() as proxy:
        url = f"{srv.url}fwd?q=1"
        r = session.get(url, proxies={"http": proxy.url})
        assert r.json() == {"ok": True, "path": "/fwd?q=1", "server": "http"}
        r = session.post(srv.url + "post", data=b"body", proxies={"http": proxy.url})
        assert r.status_code == 200
        assert proxy.log == [f"GET {url}", f"POST {srv.url}post"]
        assert srv.requests[0][1]["Host"] == f"localhost:{srv.port}"
        assert srv.requests[1][1]["Content-Length"] == "4"


def test_https_via_https_proxy(certs: Certs, session: requests.Session) -> None:
    with HTTPSServer(certs.cert, certs.key) as srv, HTTPSProxy(certs.cert, certs.key) as proxy:
        assert proxy.url.startswith("https://")
        for _ in range(2):
            r = session.get(srv.url + "tls-in-tls", verify=certs.ca, proxies={"https": proxy.url})
            assert r.json()["path"] == "/tls-in-tls"
        assert proxy.log == [f"CONNECT 127.0.0.1:{srv.port}"]
        assert (srv.handshakes, proxy.handshakes) == (1, 1)


# Stock requests applies `verify` only to https:// URLs: for an http:// URL it sets
# CERT_NONE on the pool, so the TLS hop to the https proxy is unverified and urllib3 warns.
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_http_via_https_proxy(certs: Certs, session: requests.Session) -> None:
    with HTTPServer() as srv, HTTPSProxy(certs.cert, certs.key) as proxy:
        r = session.get(srv.url + "x", verify=certs.ca, proxies={"http": proxy.url})
        assert r.json()["path"] == "/x"
        assert proxy.log == [f"GET {srv.url}x"]
        assert proxy.handshakes == 1


# urllib3#3374: a CONNECT refused with 407 leaves its socket open (Python <= 3.10).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_proxy_auth(certs: Certs, session: requests.Session, scheme: str) -> None:
    origin = HTTPSServer(certs.cert, certs.key) if scheme == "https" else HTTPServer()
    with origin as srv, ConnectProxy(require_auth=("user", "p@ss")) as proxy:
        if scheme == "https":
            with pytest.raises(requests.exceptions.ProxyError, match="407"):
                session.get(srv.url, verify=certs.ca, proxies={scheme: proxy.url})
        else:
            r = session.get(srv.url, proxies={scheme: proxy.url})
            assert r.status_code == 407
            assert r.headers["Proxy-Authenticate"].startswith("Basic")
        assert proxy.auth_headers == []
        assert srv.requests == []
        proxies = {scheme: proxy.url_with_auth("user", "p@ss")}
        r = session.get(srv.url + "ok", verify=certs.ca, proxies=proxies)
        assert r.json()["path"] == "/ok"
        assert proxy.auth_headers == ["Basic dXNlcjpwQHNz"]
        assert len(proxy.log) == 2
        assert "Proxy-Authorization" not in srv.requests[0][1]


def test_handshake_delay_is_concurrent(certs: Certs) -> None:
    delay = 0.3
    ctx = ssl.create_default_context(cafile=certs.ca)
    errors: list[BaseException] = []

    def fetch(port: int) -> None:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
                assert data.startswith(b"HTTP/1.1 200")
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    with HTTPSServer(certs.cert, certs.key, handshake_delay=delay) as srv:
        threads = [threading.Thread(target=fetch, args=(srv.port,)) for _ in range(4)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        elapsed = time.monotonic() - start
        assert errors == []
        assert (srv.handshakes, srv.connections) == (4, 4)
    assert delay <= elapsed < 2.5 * delay


def test_client_cert_recorded(certs: Certs) -> None:
    with HTTPSServer(certs.cert, certs.key, client_ca_pem_file=certs.client_ca) as srv:
        with requests.Session() as s:
            s.get(srv.url + "anon", verify=certs.ca)
        with requests.Session() as s:
            s.get(srv.url + "mtls", verify=certs.ca, cert=certs.client_cert)
        assert [p for p, _ in srv.requests] == ["/anon", "/mtls"]
        anon, mtls = srv.client_cert_subjects
        assert anon is None
        assert mtls is not None and "commonName=test-client" in mtls


def test_stop_aborts_open_connections(certs: Certs, session: requests.Session) -> None:
    srv = HTTPSServer(certs.cert, certs.key)
    proxy = ConnectProxy()
    with srv, proxy:
        session.get(srv.url, verify=certs.ca)  # idle keep-alive connection stays open
        session.get(srv.url, verify=certs.ca, proxies={"https": proxy.url})  # open tunnel
        start = time.monotonic()
    assert time.monotonic() - start < 2
    for server in (srv, proxy):
        assert server._threads == set() and server._live == set()
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(srv.url + "gone", verify=certs.ca)
