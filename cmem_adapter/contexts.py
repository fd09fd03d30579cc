"""SSL contexts: built once per trust configuration, frozen, shared, rebuilt when CA files change.

Data flows one way: a `TrustPolicy` (plus, per request, a client certificate) names a
`LiveContext`; its `current()` is the frozen `ssl.SSLContext` that urllib3 uses. Contexts are
compared by identity in urllib3's pool keys, so a rebuilt context also means new pools.
"""

from __future__ import annotations

import functools
import logging
import socket
import ssl
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import certifi
from urllib3._version import __version__ as urllib3_version
from urllib3.util import ssl_ as urllib3_ssl

from .bundles import FileState, file_states
from .errors import ConfigError

if TYPE_CHECKING:
    from .policy import TrustPolicy

log = logging.getLogger("cmem_adapter")

CHECK_INTERVAL = 1.0
"""Seconds between looks at a context's CA files: a replaced file is trusted this soon."""

ClientCert = tuple[str, ...]
"""Absolute paths: (certificate file,) or (certificate file, key file)."""

_FROZEN_ATTRIBUTES = frozenset({"verify_mode", "check_hostname"})

URLLIB3_MATCHES_NAMES = urllib3_version.startswith("1.")
"""urllib3 1.26 matches host names itself and gives `ssl` no server_hostname for an IP address,
which a context with check_hostname refuses ("check_hostname requires server_hostname"). But
it matches nothing on the TLS hop to an ``https://`` proxy given its own context. So on 1.26
origin contexts leave names to urllib3, and proxy-hop contexts check them (a variant of each)."""


class FrozenContext(ssl.SSLContext):
    """An `ssl.SSLContext` that requests and urllib3 can use but no longer change.

    After `freeze()`, setting `verify_mode` or `check_hostname` and loading CAs or a client
    certificate are ignored. urllib3 does all of these to the context it is given, on every
    new connection: it loads certifi or the ``verify`` path (requests#6726, urllib3#3623), the
    client certificate (requests#6726), and copies the pool's ``cert_reqs`` into
    ``verify_mode`` — on urllib3 2.0-2.7 even the origin's into the proxy's context
    (urllib3#3472). Each would widen or weaken what a shared context trusts.
    """

    unverified_by_choice = False
    """True for the context of an ``off`` policy: urllib3 is not asked to warn about it."""
    verified: bool
    """Whether it verifies servers; set by `freeze` (cheaper than `verify_mode` per request)."""
    _frozen = False

    def freeze(self) -> None:
        """Makes every later change by requests or urllib3 a no-op."""
        self.verified = self.verify_mode == ssl.CERT_REQUIRED
        self._frozen = True

    def __setattr__(self, name: str, value: Any) -> None:
        if not (self._frozen and name in _FROZEN_ATTRIBUTES):
            super().__setattr__(name, value)

    def load_verify_locations(self, *args: Any, **kwargs: Any) -> None:
        if not self._frozen:
            super().load_verify_locations(*args, **kwargs)

    def load_cert_chain(self, *args: Any, **kwargs: Any) -> None:
        if not self._frozen:
            super().load_cert_chain(*args, **kwargs)

    _alpn: tuple[str, ...] = ()

    def set_alpn_protocols(self, alpn_protocols: Iterable[str]) -> None:
        """Sets the ALPN protocols; once frozen, setting the same ones again is a no-op.

        urllib3 sets its list before every new connection. On a context shared by threads,
        that frees the list other threads are copying in ``SSL_new``, which runs without the
        GIL: a use-after-free that garbles their ClientHello (cpython#141012; seen as
        TLSV1_ALERT_DECODE_ERROR from the server with 8 threads). `build` sets urllib3's list
        before freezing.
        """
        protocols = tuple(alpn_protocols)
        if not (self._frozen and protocols == self._alpn):
            super().set_alpn_protocols(protocols)
            self._alpn = protocols

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        """Wraps `sock`; without a server_hostname, the address `sock` is connected to is checked.

        Only urllib3 1.26 leaves server_hostname out, and only for an IP-address host: that
        address is the one connected to, on the only hop where this context checks names.
        """
        if server_hostname is None and self.check_hostname and not server_side:
            server_hostname = sock.getpeername()[0]
        return super().wrap_socket(
            sock,
            server_side,
            do_handshake_on_connect,
            suppress_ragged_eofs,
            server_hostname,
            session,
        )


@functools.cache
def _truststore_class() -> type[FrozenContext]:
    # Imported on first use only: truststore costs about 5 ms to import.
    import truststore

    class FrozenTruststoreContext(FrozenContext, truststore.SSLContext):  # type: ignore[misc]
        """truststore's OS-verified context, frozen like the others."""

    return FrozenTruststoreContext


def _verifying_context() -> FrozenContext:
    context = FrozenContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    # Every certificate in a bundle is a trust anchor, an intermediate or a pinned server
    # certificate too (what `fetch-chain` saves, and cmemc's docs tell users to save), on
    # every Python: 3.13's create_default_context does the same (cpython#107361).
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if sys.version_info >= (3, 13):
        # As ssl.create_default_context() from 3.13, and urllib3 >= 2.4 for its own
        # contexts: stock requests on this Python checks certificates as strictly.
        context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


def _unverified_context(by_choice: bool) -> FrozenContext:
    context = FrozenContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # before CERT_NONE, or ssl raises ValueError
    context.verify_mode = ssl.CERT_NONE
    context.unverified_by_choice = by_choice
    return context


class _EncryptedKey(Exception):
    """Raised by OpenSSL's pass phrase callback: requests has no way to give one."""


def _no_pass_phrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal, blocking the request.
    raise _EncryptedKey


def _load_client_cert(context: FrozenContext, cert: ClientCert) -> tuple[FileState, ...]:
    states = file_states(cert)
    try:
        context.load_cert_chain(*cert, password=_no_pass_phrase)
    except (OSError, ssl.SSLError, _EncryptedKey) as e:
        problem = "its key is encrypted" if isinstance(e, _EncryptedKey) else f"{e}"
        raise ConfigError(
            f"cert= (client certificate) {' and '.join(cert)}: cannot be loaded ({problem})."
            " Fix: pass a PEM certificate file and its unencrypted key (openssl pkey -in"
            " key.pem -out plain-key.pem)"
        ) from None
    return states


def build(
    policy: TrustPolicy, cert: ClientCert | None, by_request: bool, proxy_hop: bool
) -> tuple[FrozenContext, tuple[FileState, ...]]:
    """Returns a new frozen context for `policy` (and client certificate), and its files' state.

    `by_request` marks an ``off`` context as a request's ``verify=False`` rather than the
    policy's choice: urllib3 then warns about it as it always does. `proxy_hop` asks for the
    context of the TLS hop to an ``https://`` proxy (see `URLLIB3_MATCHES_NAMES`).
    """
    states: tuple[FileState, ...] = ()
    if policy.source == "off":
        context = _unverified_context(by_choice=not by_request)
    elif policy.source == "system" and policy.system_store is None:
        context = _truststore_class()(ssl.PROTOCOL_TLS_CLIENT)
    elif policy.source == "system":
        store = policy.system_store
        assert store is not None
        context = FrozenContext(ssl.PROTOCOL_TLS_CLIENT)  # flags as truststore's inner context
        states += store.load_into(context)
    else:
        context = _verifying_context()
        if policy.source == "certifi":
            # contents(), not where(): no file is extracted from a zipapp or frozen app.
            context.load_verify_locations(cadata=certifi.contents())
    if policy.ca is not None:
        states += policy.ca.load_into(context)
    if cert is not None:
        states += _load_client_cert(context, cert)
    if URLLIB3_MATCHES_NAMES and not proxy_hop:
        context.check_hostname = False
    context.set_alpn_protocols(urllib3_ssl.ALPN_PROTOCOLS)
    context.freeze()
    return context, states


class LiveContext:
    """The current context for one trust configuration; rebuilt when its files change.

    Files are looked at no more than once per `CHECK_INTERVAL`, by the request that finds the
    interval over; other threads keep using the current context meanwhile. A file that fails to
    load keeps the last good context and logs one error per broken state, so there is never a
    moment without verification.
    """

    def __init__(
        self, policy: TrustPolicy, cert: ClientCert | None, by_request: bool, proxy_hop: bool
    ) -> None:
        self._build_args = (policy, cert, by_request, proxy_hop)
        self._context, self._states = build(*self._build_args)
        self._next_check = time.monotonic() + CHECK_INTERVAL
        self._failed: tuple[FileState, ...] | None = None
        self._lock = threading.Lock()

    def current(self) -> FrozenContext:
        """Returns the context to use for a new connection now."""
        if (
            self._states
            and time.monotonic() >= self._next_check
            and self._lock.acquire(blocking=False)  # else another thread is looking
        ):
            try:
                error = self._reload_if_changed(retry_failed=False)
            finally:
                self._lock.release()
            if error is not None:
                log.error("%s; keeping the CAs loaded before", error)
        return self._context

    def check(self) -> None:
        """Looks at the files now: loads a good change, raises `ConfigError` for a bad one.

        For a policy being built while an equal one is in use: the new one must not take a
        broken file for good. Connections keep the last good context either way.
        """
        if self._states:
            with self._lock:
                error = self._reload_if_changed(retry_failed=True)
            if error is not None:
                raise error

    def _reload_if_changed(self, retry_failed: bool) -> ConfigError | None:
        """Rebuilds the context if its files changed; returns the error if they do not load.

        A state that failed before is not tried again unless `retry_failed`: one error per
        broken state, not one per second.
        """
        self._next_check = time.monotonic() + CHECK_INTERVAL
        states = file_states([path for path, _ in self._states])
        if states == self._states or (states == self._failed and not retry_failed):
            return None
        try:
            self._context, self._states = build(*self._build_args)
        except ConfigError as e:
            self._failed = states
            return e
        log.info("Reloaded: %s", self._build_args[0].describe())
        return None


LIVE_CONTEXTS_KEPT = 128
"""How many contexts are kept for reuse. Beyond it the least recently asked for is dropped:
each distinct per-request ``verify=`` path or client certificate has one, and a program that
makes a new CA file per request must not pile them up. Pools still using it keep it alive."""

_live: OrderedDict[tuple[object, ...], LiveContext] = OrderedDict()
_live_lock = threading.Lock()


def live_context(
    policy: TrustPolicy,
    cert: ClientCert | None = None,
    *,
    by_request: bool = False,
    proxy_hop: bool = False,
) -> LiveContext:
    """Returns the shared `LiveContext` for this policy and client certificate.

    Equal policies share one while it is among the `LIVE_CONTEXTS_KEPT` last asked for; the
    call that builds it raises `ConfigError` if it cannot.
    """
    key = (
        policy,
        cert,
        by_request and policy.source == "off",
        proxy_hop and URLLIB3_MATCHES_NAMES and policy.source != "off",
    )
    with _live_lock:
        live = _live.get(key)
        if live is not None:
            _live.move_to_end(key)
            return live
        live = _live[key] = LiveContext(*key)
        if len(_live) > LIVE_CONTEXTS_KEPT:
            _live.popitem(last=False)
        return live
