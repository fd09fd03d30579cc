"""Benchmarks for DESIGN §8: cmem_adapter against stock requests, side by side in one run.

``python bench/bench.py`` after ``pip install .``: candidates run interleaved, alternating round
by round so machine noise hits both alike, against loopback HTTPS servers with the package's
throw-away CA. Prints medians (p25-p75), ratios and PASS/FAIL; exits 1 if a target is missed.
The CA, proxy and CMEM* variables are removed first; a target needing one sets it for both sides.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socketserver
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple
from unittest.mock import patch

import certifi
import requests
import truststore
from requests.adapters import HTTPAdapter
from urllib3.util.ssl_ import create_urllib3_context

from cmem_adapter import TrustAdapter, TrustPolicy, install, mount, uninstall
from cmem_adapter._throwaway_ca import ThrowawayCA

HOST = "localhost"  # a name: urllib3 1.26 sends no SNI to an IP, which truststore refuses
CLOSE = {"Connection": "close"}  # the server closes after replying: a new connection each time
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
CLEARED = (*CA_VARIABLES, "SSL_VERIFY", "SSLKEYLOGFILE")  # also *_PROXY and CMEM*
Op = Callable[[], object]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the request says "Connection: close"
    disable_nagle_algorithm = True  # else the body waits ~40 ms for the headers' delayed ACK

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(socketserver.ThreadingTCPServer):
    """Loopback HTTPS origin, one thread per connection; the handshake waits `delay` seconds."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, context: ssl.SSLContext, delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.context, self.delay = context, delay
        self.url = f"https://{HOST}:{self.server_address[1]}/"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def finish_request(self, request: Any, client_address: Any) -> None:
        time.sleep(self.delay)
        with self.context.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up

    def server_close(self) -> None:
        self.shutdown()
        super().server_close()


class ContextAdapter(HTTPAdapter):
    """A correct hand-written adapter around one shared context: set on the pool manager
    (requests <= 2.31) and in every pool key (>= 2.32.3); no CA file is loaded into it."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, ssl_context=self.context, **kwargs)

    def build_connection_pool_key_attributes(
        self, request: Any, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        return host, {**pool_kwargs, "ssl_context": self.context}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)
        conn.ca_certs = conn.ca_cert_dir = None  # or urllib3 loads certifi into the context


class PlainContext(ssl.SSLContext):
    """A plain context for the reference of target 4, given its ALPN list once, as the library
    does: urllib3's per-connection set_alpn_protocols on a context shared by threads is a
    use-after-free (cpython#141012) that fails a handshake now and then."""

    @classmethod
    def trusting(cls, cafile: str) -> PlainContext:
        context = cls(ssl.PROTOCOL_TLS_CLIENT)  # as ssl.create_default_context(cafile=...)
        context.load_verify_locations(cafile)
        super(PlainContext, context).set_alpn_protocols(["http/1.1"])
        return context

    def set_alpn_protocols(self, alpn_protocols: Iterable[str]) -> None:
        pass


class Stats(NamedTuple):
    median: float  # ms
    p25: float
    p75: float

    @classmethod
    def of(cls, ms: Sequence[float]) -> Stats:
        p25, _, p75 = statistics.quantiles(ms, n=4)
        return cls(statistics.median(ms), p25, p75)

    def __str__(self) -> str:
        return f"{self.median:.3g} ({self.p25:.3g}-{self.p75:.3g})"


def interleaved(
    ops: Sequence[Op], rounds: int, reps: int, around: Mapping[int, Callable[[], Any]] | None = None
) -> list[Stats]:
    """Times `reps` calls of each op per round, each round starting with the next op.

    Round 0 warms up and is not kept. `around` gives an op a context entered for each batch.
    """
    times: list[list[float]] = [[] for _ in ops]
    for r in range(rounds + 1):
        for i in [(r + k) % len(ops) for k in range(len(ops))]:
            with (around or {}).get(i, contextlib.nullcontext)():
                for _ in range(reps):
                    start = time.perf_counter()
                    ops[i]()
                    if r:
                        times[i].append((time.perf_counter() - start) * 1e3)
    return [Stats.of(t) for t in times]


class Row(NamedTuple):
    name: str
    ours: Stats
    reference: Stats
    limit: float | None  # on the ratio of medians; None: for information only
    unit: str = ""  # " ms": the limit is on the difference of medians instead

    @property
    def value(self) -> float:
        if self.unit:
            return self.ours.median - self.reference.median
        return self.ours.median / self.reference.median

    @property
    def passed(self) -> bool:
        return self.limit is None or self.value <= self.limit

    def __str__(self) -> str:
        value, limit = f"{self.value:{'+.1f' if self.unit else '.3f'}}{self.unit}", "info"
        if self.limit is not None:
            limit = f"{self.limit:g}{self.unit}  {'PASS' if self.passed else 'FAIL'}"
        return f"{self.name:<44}{self.ours!s:>24}{self.reference!s:>24}{value:>9}  {limit}"


@contextlib.contextmanager
def installed() -> Iterator[None]:
    install()  # TrustPolicy.from_env(), i.e. REQUESTS_CA_BUNDLE, loaded once
    try:
        yield
    finally:
        uninstall()


def session(url: str, using: TrustPolicy | HTTPAdapter | str) -> requests.Session:
    """Returns a session for `url` with mount(policy), an adapter, or stock with verify=path."""
    s = requests.Session()
    if isinstance(using, TrustPolicy):
        mount(s, url, using)
    elif isinstance(using, HTTPAdapter):
        s.mount("https://", using)
    else:
        s.verify = using
    return s


def get(s: Any, url: str, new_connection: bool) -> Op:
    """Returns a GET of `url` by `s`, a session or the requests module."""
    headers = CLOSE if new_connection else None
    return lambda: s.get(url, headers=headers).raise_for_status()


def burst(pool: ThreadPoolExecutor, s: requests.Session, url: str) -> Op:
    """Returns a call that has 8 threads each send one request on a new connection at once."""
    barrier = threading.Barrier(8)

    def one() -> None:
        barrier.wait()
        s.get(url, headers=CLOSE).raise_for_status()

    return lambda: [future.result() for future in [pool.submit(one) for _ in range(8)]]


def python(code: str, env: dict[str, str]) -> Op:
    return lambda: subprocess.run([sys.executable, "-c", code], env=env, check=True)


def targets(files: Files) -> Iterator[Row]:
    with Server(files.server) as server:
        url = server.url
        # 1. A request on a reused connection, same trust (the CA alone): TrustAdapter mounted
        # with mount(bundle policy) vs stock HTTPAdapter with verify=<ca file>. Many short
        # rounds, so this machine's slow and fast spells hit both alike (A/A spread ~2 %).
        with session(url, TrustPolicy.bundle(files.ca)) as a, session(url, files.ca) as b:
            ours, ref = interleaved([get(a, url, False), get(b, url, False)], 400, 5)
        yield Row("1 keep-alive: TrustAdapter vs HTTPAdapter", ours, ref, 1.03)

        # 2. A request on a new connection (one session and pool each, so no pool built in
        # either), same trust (certifi + the CA): ours reuses one context; stock requests
        # builds one per connection and parses verify=<certifi + CA file> into it.
        policy = TrustPolicy.certifi(extra_ca=files.ca)
        with session(url, policy) as a, session(url, files.certifi_ca) as b:
            ours, ref = interleaved([get(a, url, True), get(b, url, True)], 30, 5)
        yield Row("2 new conn, certifi+CA: ours vs stock", ours, ref, 0.25)

        # 3. As 2, trusting the system store, which both take from SSL_CERT_FILE (system
        # bundle + the CA): ours loads it once; a hand-written adapter around one
        # truststore.SSLContext has it re-read on every handshake.
        with patch.dict(os.environ, SSL_CERT_FILE=files.system_ca):
            naive = ContextAdapter(truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
            with session(url, TrustPolicy.system()) as a, session(url, naive) as b:
                ours, ref = interleaved([get(a, url, True), get(b, url, True)], 30, 5)
        yield Row("3 new conn, system: ours vs truststore", ours, ref, 0.25)

        # 5. requests.Session() plus one adapter mounted for https://, the policy built once:
        # TrustAdapter(policy) vs HTTPAdapter(). The gate is this like-for-like case: mount()
        # also parses and IDNA-encodes the URL, mounts two prefixes and binds the adapter to
        # the host, which the stock session does not do; it is shown for information.
        policy = TrustPolicy.certifi()
        ops: list[Op] = [
            lambda: requests.Session().mount("https://", TrustAdapter(policy)),
            lambda: requests.Session().mount("https://", HTTPAdapter()),
            lambda: mount(requests.Session(), url, policy),
        ]
        ours, ref, mounted = interleaved(ops, 40, 100)
        yield Row("5 new session: +TrustAdapter vs +HTTPAdapter", ours, ref, 1.25)
        yield Row("5 new session: +mount() vs +HTTPAdapter", mounted, ref, None)

        # 6. Module-level requests.get(url): a new session and connection per call, both with
        # REQUESTS_CA_BUNDLE = certifi + the CA: under install() (resolved and loaded once)
        # vs stock requests, which parses the bundle on every call.
        with patch.dict(os.environ, REQUESTS_CA_BUNDLE=files.certifi_ca):
            legacy = get(requests, url, False)
            ours, ref = interleaved([legacy, legacy], 30, 5, around={0: installed})
        yield Row("6 legacy requests.get: install() vs stock", ours, ref, 0.25)

    # 4. 8 threads open a new connection each, at once, through one shared adapter, to a
    # server that waits 100 ms before each handshake (serialised handshakes would take 8 x
    # 100 ms): TrustAdapter (bundle policy, the CA) vs ContextAdapter(plain SSLContext, the CA).
    with Server(files.server, delay=0.1) as server, ThreadPoolExecutor(8) as pool:
        plain = ContextAdapter(PlainContext.trusting(files.ca))
        policy = TrustPolicy.bundle(files.ca)
        with session(server.url, policy) as a, session(server.url, plain) as b:
            ours, ref = interleaved([burst(pool, a, server.url), burst(pool, b, server.url)], 30, 1)
        yield Row("4 8 threads, new conns: ours vs plain ctx", ours, ref, 1.5)

    # 7. Wall time of fresh interpreters: "import requests, cmem_adapter" vs "import requests".
    # Bytecode caches allowed (PYTHONDONTWRITEBYTECODE removed for these processes); the
    # untimed warm-up round writes them.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    ops = [python("import requests, cmem_adapter", env), python("import requests", env)]
    ours, ref = interleaved(ops, 25, 1)
    yield Row("7 import cmem_adapter after requests", ours, ref, 5.0, " ms")


class Files:
    """The throw-away CA's files in `folder`: alone, and appended to the public bundles."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        ca = ThrowawayCA("cmem-adapter bench CA")
        leaf = ca.issue([HOST, "127.0.0.1"])
        self.server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server.load_cert_chain(self.write("server.pem", leaf.cert_pem, leaf.key_pem))
        system = Path(ssl.get_default_verify_paths().openssl_cafile)
        system = system if system.is_file() else Path("/etc/ssl/certs/ca-certificates.crt")
        self.ca = self.write("ca.pem", ca.cert_pem)
        self.certifi_ca = self.write("certifi+ca.pem", certifi.contents(), ca.cert_pem)
        self.system_ca = self.write("system+ca.pem", system.read_text(), ca.cert_pem)

    def write(self, name: str, *pem: str) -> str:
        path = Path(self.folder, name)
        path.write_text("\n".join(pem))
        return str(path)


def certificates(path: str) -> int:
    return Path(path).read_text().count("-----BEGIN CERTIFICATE-----")


def main() -> int:
    for name in list(os.environ):
        upper = name.upper()
        if upper in CLEARED or upper.endswith("_PROXY") or upper.startswith("CMEM"):
            del os.environ[name]
    packages = ("cmem-adapter", "requests", "urllib3", "truststore", "certifi")
    print(", ".join([f"Python {platform.python_version()}", ssl.OPENSSL_VERSION]))
    print(", ".join([*(f"{p} {version(p)}" for p in packages), f"{os.cpu_count()} CPUs"]))
    with tempfile.TemporaryDirectory() as folder:
        files = Files(folder)
        # For information: the per-connection work targets 2, 3 and 6 avoid.
        ops: list[Op] = [
            lambda: create_urllib3_context().load_verify_locations(files.certifi_ca),
            lambda: ssl.create_default_context(cafile=files.system_ca),
        ]
        stock, system = interleaved(ops, 20, 5)
        n_certifi, n_system = certificates(files.certifi_ca), certificates(files.system_ca)
        print(f"Stock per new connection, new context + certifi+CA ({n_certifi} certs): {stock} ms")
        print(f"truststore per handshake, system+CA ({n_system} certs) re-read: {system} ms")
        rows = sorted(targets(files))
    print("\nms: median (p25-p75); ratio = ours / reference (medians); 7: difference of medians")
    print(f"{'target':<44}{'ours':>24}{'reference':>24}{'ratio':>9}  limit result")
    for row in rows:
        print(row)
    return 0 if all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
