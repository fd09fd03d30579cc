"""The ``demo`` command: a throw-away CA, a loopback server, and one row for each trust source."""

from __future__ import annotations

import contextlib
import http.server
import logging
import logging.handlers
import os
import socketserver
import ssl
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import requests

from ._throwaway_ca import ThrowawayCA
from .errors import ConfigError, causes
from .mounting import mount
from .policy import TrustPolicy
from .probe import TIMEOUT, plain
from .terminal import DEBUG_FORMAT, SafeFormatter, error, logging_to, say


def demo() -> int:
    """Returns 0 when each trust source verified or refused a loopback server as expected."""
    ca = ThrowawayCA()
    issued = ca.issue(["localhost", "127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="cmem-adapter-demo-") as folder:
        ca_file = _write(folder, "ca.pem", ca.cert_pem)
        server_files = (
            _write(folder, "server.pem", issued.cert_pem),
            _write(folder, "server-key.pem", issued.key_pem),
        )
        with _server(*server_files) as url:
            say(
                "A throw-away CA issued a certificate for localhost and 127.0.0.1.\n"
                f"Loopback HTTPS server: {url}\n"
                f"CA certificate:        {ca_file} (removed at the end)\n"
                "Each trust source, asked through requests and a mounted TrustAdapter:"
            )
            # On macOS and Windows the system source asks the OS, which ignores SSL_CERT_FILE.
            cert_file_honoured = sys.platform not in ("darwin", "win32")
            rows = [
                ("certifi", {}, "refused", False),
                (f"bundle  {ca_file}", {"REQUESTS_CA_BUNDLE": ca_file}, "verified", True),
                ("system", {"SSL_VERIFY": "system"}, "refused", False),
                (
                    f"system + SSL_CERT_FILE={ca_file}",
                    {"SSL_VERIFY": "system", "SSL_CERT_FILE": ca_file},
                    "verified" if cert_file_honoured else "refused",
                    False,
                ),
                ("off", {"SSL_VERIFY": "false"}, "accepted", False),
            ]
            width = max(len(row[0]) for row in rows)
            unexpected = [row[0] for row in rows if not _row(url, width, *row)]
    say(
        "To use it for real: cmem_adapter.mount(session, url) in code, or `cmem-adapter run"
        " script.py`;\nchoose the source with SSL_VERIFY=system or REQUESTS_CA_BUNDLE=/path/ca.pem"
        " (environment or config.ini)."
    )
    if unexpected:
        return error(f"unexpected outcome for: {', '.join(unexpected)}", 1)
    return 0


def _write(folder: str, name: str, text: str) -> str:
    """Returns the path of the file `name` in `folder`, written with `text`."""
    path = os.path.join(folder, name)
    with open(path, "w", encoding="ascii") as f:
        f.write(text)
    return path


def _row(
    url: str, width: int, label: str, environ: dict[str, str], expected: str, show_debug: bool
) -> bool:
    """Prints how the source from `environ` treats the server; True if it did as `expected`."""
    capture = logging.handlers.BufferingHandler(capacity=1000)
    capture.setFormatter(SafeFormatter(DEBUG_FORMAT))
    with logging_to(capture):
        outcome = _outcome(url, environ)
    say(f"  {label:<{width}}  {outcome}")
    for record in capture.buffer:
        if record.levelno >= logging.WARNING:
            say(f"      {record.levelname.lower()}: {record.getMessage()}")
        elif show_debug:
            say(f"      with --debug: {capture.format(record)}")
    return outcome.startswith(expected)


def _outcome(url: str, environ: dict[str, str]) -> str:
    """Returns how the source `environ` chooses treats the server: "verified", "refused", ...
    with why, padded to line up."""
    try:
        policy = TrustPolicy.from_env(environ)
    except ConfigError as e:
        return f"unavailable ({e})"
    with requests.Session() as session:
        session.trust_env = False  # no proxy, no REQUESTS_CA_BUNDLE from outside
        mount(session, url, policy)
        try:
            session.get(url, timeout=TIMEOUT).close()
        except requests.exceptions.SSLError as e:
            found = [c for c in causes(e) if isinstance(c, ssl.SSLCertVerificationError)]
            return f"refused   ({found[0].verify_message if found else plain(e)})"
        except requests.exceptions.RequestException as e:
            return f"failed    ({plain(e)})"
    return "accepted without verification" if policy.source == "off" else "verified"


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with a line of text."""

    def do_GET(self) -> None:
        body = b"Hello from the cmem-adapter demo server\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keeps the demo's output to its own lines."""


@contextlib.contextmanager
def _server(cert_file: str, key_file: str) -> Iterator[str]:
    """Yields the URL of an HTTPS server on 127.0.0.1, stopped and joined afterwards."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    # Handshakes happen on accept; a client refusing the certificate is dropped quietly there.
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()  # joins the request threads
        thread.join()
