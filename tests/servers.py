"""Stdlib-only loopback HTTP(S) origin servers and forward proxies for real-TLS tests.

Every server binds ``127.0.0.1`` on an ephemeral port as soon as it is constructed, serves
each connection from its own daemon thread (TLS handshakes included) and is used as a
context manager::

    with HTTPSServer(cert, key) as origin, ConnectProxy() as proxy:
        requests.get(origin.url, verify=ca_file, proxies={"https": proxy.url})

Proxies only ever connect to loopback addresses; any other target gets a 403.
"""

from __future__ import annotations

import base64
import contextlib
import email.message
import http.client
import ipaddress
import json
import os
import selectors
import socket
import socketserver
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, TypeVar, cast
from urllib.parse import parse_qs, quote, urlsplit

__all__ = [
    "ConnectProxy",
    "HTTPSProxy",
    "HTTPSServer",
    "HTTPServer",
    "StrPath",
    "server_tls_context",
]

StrPath = str | os.PathLike[str]
_S = TypeVar("_S", bound="_LoopbackServer")

IO_TIMEOUT = 30.0
"""Socket timeout (seconds) for idle connections, handshakes and idle tunnels."""

JOIN_TIMEOUT = 5.0
"""How long ``stop()`` waits for each connection thread after closing its socket."""

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


def server_tls_context(
    cert_pem_file: StrPath, key_pem_file: StrPath, client_ca_pem_file: StrPath | None = None
) -> ssl.SSLContext:
    """Build a server-side TLS context; with a client CA, client certs become optional."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_pem_file, key_pem_file)
    if client_ca_pem_file is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(client_ca_pem_file)
    return ctx


def _read_exact(rfile: Any, n: int) -> bytes:
    """Read exactly ``n`` bytes (raw socket files may return short reads)."""
    chunks: list[bytes] = []
    while n > 0:
        chunk = rfile.read(n)
        if not chunk:
            raise ConnectionError("peer closed the connection mid-body")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_body(rfile: Any, headers: email.message.Message) -> bytes:
    """Read a request body framed by Content-Length or chunked encoding."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        chunks: list[bytes] = []
        while True:
            size = int(rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(1024).strip():  # trailers up to the blank line
                    pass
                return b"".join(chunks)
            chunks.append(_read_exact(rfile, size))
            _read_exact(rfile, 2)  # CRLF after each chunk
    length = int(headers.get("Content-Length") or 0)
    return _read_exact(rfile, length) if length else b""


def _cert_subject(cert: Any) -> str | None:
    """Format a ``getpeercert()`` subject as ``key=value,...``; None when no cert."""
    if not cert:
        return None
    return ",".join(f"{key}={value}" for rdn in cert.get("subject", ()) for key, value in rdn)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _ThreadingServer(ThreadingHTTPServer):
    """Listening socket + accept loop; connections are handed to the owning server."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, owner: _LoopbackServer, handler: type[BaseHTTPRequestHandler]) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS ``getfqdn`` lookup."""
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        self.owner._spawn(request, client_address)


class _LoopbackServer:
    """Shared lifecycle: thread per connection, optional lazy TLS, counters, clean stop."""

    scheme: ClassVar[str] = "http"
    handler_class: ClassVar[type[BaseHTTPRequestHandler]]

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        ssl_context: ssl.SSLContext | None = None,
        handshake_delay: float = 0.0,
    ) -> None:
        self.host = host
        self.ssl_context = ssl_context
        self.handshake_delay = handshake_delay
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._closed = False
        self._handshakes = 0
        self._connections = 0
        self._live: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._serve_thread: threading.Thread | None = None
        self._httpd = _ThreadingServer(self, self.handler_class)
        self.port: int = self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL with a trailing slash, using the ``host`` name given at construction."""
        return f"{self.scheme}://{_url_host(self.host)}:{self.port}/"

    @property
    def handshakes(self) -> int:
        """TLS handshakes completed server-side (always 0 for plaintext servers)."""
        with self._lock:
            return self._handshakes

    @property
    def connections(self) -> int:
        """TCP connections accepted."""
        with self._lock:
            return self._connections

    def reset(self) -> None:
        """Zero the counters and clear recorded data."""
        with self._lock:
            self._handshakes = 0
            self._connections = 0
            self.errors.clear()
            self._reset_records()

    def _reset_records(self) -> None:
        """Subclass hook, called with the lock held."""

    def start(self) -> None:
        """Start the accept loop in a daemon thread."""
        if self._serve_thread is not None or self._closed:
            raise RuntimeError("server already started or stopped")
        self._serve_thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._serve_thread.start()

    def stop(self) -> None:
        """Stop accepting, abort every open connection and join the threads (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stopping.set()
        if self._serve_thread is not None:
            self._httpd.shutdown()
            self._serve_thread.join(JOIN_TIMEOUT)
        self._httpd.server_close()
        with self._lock:
            for sock in self._live:
                self._abort(sock)
            threads = list(self._threads)
        for thread in threads:
            thread.join(JOIN_TIMEOUT)

    def __enter__(self: _S) -> _S:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def _abort(sock: socket.socket) -> None:
        """Wake any thread blocked on ``sock`` (fd-level shutdown, TLS state untouched)."""
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            if self._closed:
                raise ConnectionAbortedError("server is stopping")
            self._live.add(sock)

    def _release(self, sock: socket.socket) -> None:
        with self._lock:
            self._live.discard(sock)
        sock.close()

    def _record_error(self, exc: BaseException) -> None:
        if not self._stopping.is_set():
            with self._lock:
                self.errors.append(exc)

    def _spawn(self, sock: socket.socket, address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(sock, address),
            name=f"{type(self).__name__}:{self.port}-conn",
            daemon=True,
        )
        with self._lock:
            if self._closed:
                sock.close()
                return
            self._connections += 1
            self._live.add(sock)
            self._threads.add(thread)
        thread.start()

    def _serve_connection(self, raw: socket.socket, address: Any) -> None:
        conn = raw
        try:
            raw.settimeout(IO_TIMEOUT)
            if self.ssl_context is not None:
                if self.handshake_delay > 0 and self._stopping.wait(self.handshake_delay):
                    return
                with self._lock:  # swap raw -> TLS socket atomically w.r.t. stop()
                    if self._closed:
                        return
                    tls = self.ssl_context.wrap_socket(
                        raw, server_side=True, do_handshake_on_connect=False
                    )
                    conn = tls
                    self._live.discard(raw)
                    self._live.add(tls)
                tls.do_handshake()
                with self._lock:
                    self._handshakes += 1
            self.handler_class(conn, address, self._httpd)
        except Exception as exc:  # connection-level failures are expected in tests
            self._record_error(exc)
        finally:
            self._release(conn)
            with self._lock:
                self._threads.discard(threading.current_thread())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cmem-test"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _send_simple(
        self, code: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        headers = dict(headers or {})
        if self.close_connection:  # say so, or clients reuse a connection closed under them
            headers.setdefault("Connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)


class _OriginHandler(_Handler):
    def _owner(self) -> _OriginServer:
        return cast(_OriginServer, cast(_ThreadingServer, self.server).owner)

    def _respond(self) -> None:
        owner = self._owner()
        _read_body(self.rfile, self.headers)
        peer = getattr(self.connection, "getpeercert", None)
        subject = _cert_subject(peer() if peer else None)
        owner._record(self.path, dict(self.headers.items()), subject)
        parts = urlsplit(self.path)
        if parts.path == "/redirect":
            target = parse_qs(parts.query).get("to", ["/"])[0]
            self._send_simple(302, headers={"Location": target})
            return
        body = json.dumps({"ok": True, "path": self.path, "server": owner.name}).encode()
        self._send_simple(200, body, {"Content-Type": "application/json"})

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _respond


class _OriginServer(_LoopbackServer):
    handler_class = _OriginHandler

    def __init__(self, host: str, name: str, **kwargs: Any) -> None:
        self.name = name
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.client_cert_subjects: list[str | None] = []
        super().__init__(host, **kwargs)

    def _record(self, path: str, headers: dict[str, str], subject: str | None) -> None:
        with self._lock:
            self.requests.append((path, headers))
            self.client_cert_subjects.append(subject)

    def _reset_records(self) -> None:
        self.requests.clear()
        self.client_cert_subjects.clear()


class HTTPServer(_OriginServer):
    """Plaintext origin: any path -> 200 JSON ``{"ok", "path", "server"}``, keep-alive.

    ``/redirect?to=URL`` answers 302 to URL. ``.requests`` holds ``(path, headers)``.
    """

    def __init__(self, host: str = "127.0.0.1", *, name: str = "http") -> None:
        super().__init__(host, name)


class HTTPSServer(_OriginServer):
    """TLS origin like :class:`HTTPServer`; counts handshakes, optional client certs.

    ``handshake_delay`` sleeps after accept and before the handshake, in the connection's
    own thread. With ``client_ca_pem_file`` client certs are optional and verified;
    ``.client_cert_subjects`` has one subject string (or None) per recorded request.
    """

    scheme = "https"

    def __init__(
        self,
        cert_pem_file: StrPath,
        key_pem_file: StrPath,
        host: str = "127.0.0.1",
        handshake_delay: float = 0.0,
        *,
        client_ca_pem_file: StrPath | None = None,
        name: str = "https",
    ) -> None:
        ctx = server_tls_context(cert_pem_file, key_pem_file, client_ca_pem_file)
        super().__init__(host, name, ssl_context=ctx, handshake_delay=handshake_delay)


class _ProxyHandler(_Handler):
    # Unbuffered reads: nothing past the request head may be swallowed before tunnelling.
    rbufsize = 0

    def _owner(self) -> ConnectProxy:
        return cast(ConnectProxy, cast(_ThreadingServer, self.server).owner)

    def _authorized(self) -> bool:
        owner = self._owner()
        value = self.headers.get("Proxy-Authorization")
        if value is not None:
            with owner._lock:
                owner.auth_headers.append(value)
        if owner.require_auth is None or value == owner._expected_auth:
            return True
        self.close_connection = True
        self._send_simple(
            407,
            headers={"Proxy-Authenticate": 'Basic realm="cmem-test-proxy"', "Connection": "close"},
        )
        return False

    def _upstream(self, host: str, port: int) -> socket.socket | None:
        try:
            return self._owner()._connect_upstream(host, port)
        except PermissionError as exc:
            self._send_simple(403, str(exc).encode(), {"Connection": "close"})
        except OSError as exc:
            self._send_simple(502, str(exc).encode(), {"Connection": "close"})
        self.close_connection = True
        return None

    def do_CONNECT(self) -> None:
        owner = self._owner()
        owner._log(f"CONNECT {self.path}")
        self.close_connection = True
        if not self._authorized():
            return
        host, _, port = self.path.rpartition(":")
        if not port.isdigit():
            self._send_simple(400, b"CONNECT target must be host:port")
            return
        upstream = self._upstream(host.strip("[]"), int(port))
        if upstream is None:
            return
        try:
            self.send_response(200, "Connection established")
            self.end_headers()
            owner._pump(self.connection, upstream)
        finally:
            owner._release(upstream)

    def _forward(self) -> None:
        owner = self._owner()
        owner._log(f"{self.command} {self.path}")
        self.close_connection = True
        body = _read_body(self.rfile, self.headers)
        if not self._authorized():
            return
        parts = urlsplit(self.path)
        if parts.scheme != "http" or not parts.hostname:
            self._send_simple(400, b"only absolute-form http:// URLs are forwarded")
            return
        upstream = self._upstream(parts.hostname, parts.port or 80)
        if upstream is None:
            return
        try:
            self._relay(upstream, parts.path or "/", parts.query, body)
        finally:
            owner._release(upstream)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _forward

    def _relay(self, upstream: socket.socket, path: str, query: str, body: bytes) -> None:
        origin = http.client.HTTPConnection("127.0.0.1", timeout=IO_TIMEOUT)
        origin.sock = upstream
        origin.putrequest(
            self.command,
            path + (f"?{query}" if query else ""),
            skip_host=True,
            skip_accept_encoding=True,
        )
        for name, value in self.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                origin.putheader(name, value)
        if body or self.command in ("POST", "PUT", "PATCH"):
            origin.putheader("Content-Length", str(len(body)))
        origin.putheader("Connection", "close")
        try:
            origin.endheaders(body or None)
            response = origin.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._send_simple(502, f"origin failed: {exc!r}".encode(), {"Connection": "close"})
            return
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        length = response.getheader("Content-Length")
        if length is not None and response.getheader("Transfer-Encoding") is None:
            self.send_header("Content-Length", length)
        self.send_header("Connection", "close")
        self.end_headers()
        while chunk := response.read(65536):  # unknown length -> close-delimited
            self.wfile.write(chunk)
        response.close()
        origin.sock = None  # the caller releases the socket


class ConnectProxy(_LoopbackServer):
    """Plaintext forward proxy: ``CONNECT host:port`` tunnels and absolute-form forwarding.

    ``.log`` gets ``"CONNECT host:port"`` or ``"<METHOD> http://..."`` for every request
    received (rejected ones included); ``.auth_headers`` every Proxy-Authorization value.
    With ``require_auth=(user, password)`` a missing/wrong header gets a 407 + close.
    Forwarded responses always carry ``Connection: close``.
    """

    handler_class = _ProxyHandler

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        require_auth: tuple[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        handshake_delay: float = 0.0,
    ) -> None:
        self.require_auth = require_auth
        self.log: list[str] = []
        self.auth_headers: list[str] = []
        self._expected_auth: str | None = None
        if require_auth is not None:
            token = base64.b64encode(":".join(require_auth).encode()).decode()
            self._expected_auth = f"Basic {token}"
        super().__init__(host, ssl_context=ssl_context, handshake_delay=handshake_delay)

    def url_with_auth(self, user: str, password: str) -> str:
        """Proxy URL carrying (percent-encoded) credentials, for ``proxies={...}``."""
        creds = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"{self.scheme}://{creds}@{_url_host(self.host)}:{self.port}/"

    def _reset_records(self) -> None:
        self.log.clear()
        self.auth_headers.clear()

    def _log(self, line: str) -> None:
        with self._lock:
            self.log.append(line)

    def _connect_upstream(self, host: str, port: int) -> socket.socket:
        """Open a TCP connection to a loopback target (tracked so ``stop()`` can abort it)."""
        last: OSError = PermissionError(f"refusing non-loopback target {host}:{port}")
        for family, kind, proto, _, sockaddr in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        ):
            if not _is_loopback(str(sockaddr[0])):
                continue
            sock = socket.socket(family, kind, proto)
            try:
                self._track(sock)
            except OSError:
                sock.close()
                raise
            try:
                sock.settimeout(IO_TIMEOUT)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                self._release(sock)
                last = exc
        raise last

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        """Copy bytes both ways until either side closes, errors or idles out."""
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            while not self._stopping.is_set():
                # TLS may hold decrypted bytes that the selector cannot see.
                ready: list[socket.socket] = [
                    s for s in peers if isinstance(s, ssl.SSLSocket) and s.pending()
                ]
                if not ready:
                    ready = [
                        cast(socket.socket, key.fileobj) for key, _ in selector.select(IO_TIMEOUT)
                    ]
                    if not ready:
                        return
                for sock in ready:
                    try:
                        data = sock.recv(65536)
                        if not data:
                            return
                        peers[sock].sendall(data)
                    except (OSError, ssl.SSLError):
                        return


class HTTPSProxy(ConnectProxy):
    """:class:`ConnectProxy` reached over TLS (an ``https://`` proxy URL).

    CONNECT tunnels therefore carry TLS-in-TLS. Counts handshakes like the servers.
    """

    scheme = "https"

    def __init__(
        self,
        cert_pem_file: StrPath,
        key_pem_file: StrPath,
        host: str = "127.0.0.1",
        *,
        require_auth: tuple[str, str] | None = None,
        handshake_delay: float = 0.0,
    ) -> None:
        super().__init__(
            host,
            require_auth=require_auth,
            ssl_context=server_tls_context(cert_pem_file, key_pem_file),
            handshake_delay=handshake_delay,
        )
