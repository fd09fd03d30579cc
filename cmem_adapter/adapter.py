"""TrustAdapter: a requests transport adapter that verifies servers against one trust policy."""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import socket
import ssl
import threading
from typing import Any
from urllib.parse import SplitResult, urlsplit

from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from requests.exceptions import InvalidProxyURL, InvalidURL, ProxyError, SSLError
from requests.models import PreparedRequest, Response
from requests.utils import prepend_scheme_if_needed, select_proxy
from urllib3 import PoolManager
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import parse_url

from .contexts import ClientCert, FrozenContext, LiveContext, live_context
from .errors import causes
from .policy import TrustPolicy, request_policy, warn_if_off

log = logging.getLogger("cmem_adapter")

DEFAULT_PORTS = {"http": 80, "https": 443}

# requests <= 2.31 asks get_connection(url, proxies) for the pool, without verify or cert (the
# root of CVE-2024-35195): send() keeps them for it, per thread. Later releases pass them.
_POOL_HOOK_LACKS_TLS_ARGUMENTS = not (
    hasattr(HTTPAdapter, "get_connection_with_tls_context")
    or hasattr(HTTPAdapter, "_get_connection")
)

Origin = tuple[str, str, int]
"""(scheme, host, port) of a URL, lower-cased, with the default port filled in."""


def without_credentials(url: str) -> str:
    """Returns `url` with any user name and password removed, for logs and messages."""
    return str(parse_url(url)._replace(auth=None))


def origin_of(url: str | SplitResult) -> Origin:
    """Returns the (scheme, host, port) a URL connects to, the host in one canonical spelling.

    User info is no part of it; ``H.example.`` is ``h.example``; ``127.1``, ``2130706433`` and
    ``0x7f.0.0.1`` are ``127.0.0.1`` (as the resolver reads them), ``[0::1]`` is ``::1``.
    """
    parts = urlsplit(url) if isinstance(url, str) else url
    scheme = parts.scheme.lower()
    port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    return scheme, _canonical_host((parts.hostname or "").rstrip(".")), port


def _canonical_host(host: str) -> str:
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:  # a name
        return host


class TrustAdapter(HTTPAdapter):
    """A `requests.adapters.HTTPAdapter` that owns the TLS trust decision.

    Every HTTPS connection is verified against `policy` (default: `TrustPolicy.from_env()`),
    the TLS hop to an ``https://`` proxy against `proxy_policy` (default: `policy`). A request's
    own ``verify=False`` or ``verify=<path>`` gets a pool of its own, unless `enforce` is true;
    any other ``verify`` (True, None, "", 0) and one that requests took from
    ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` is no choice: the policy applies. Other keyword
    arguments go to `HTTPAdapter`.
    """

    __attrs__ = [  # noqa: RUF012 (declared by requests)
        *HTTPAdapter.__attrs__,
        "policy",
        "proxy_policy",
        "enforce",
        "bound_to",
    ]

    def __init__(
        self,
        policy: TrustPolicy | None = None,
        proxy_policy: TrustPolicy | None = None,
        *,
        enforce: bool = False,
        **kwargs: Any,
    ) -> None:
        for name, given in (("policy", policy), ("proxy_policy", proxy_policy)):
            if given is not None and not isinstance(given, TrustPolicy):
                raise TypeError(
                    f"TrustAdapter {name} must be a TrustPolicy, e.g. TrustPolicy.system(),"
                    f" not {given!r}"
                )
        self.policy = TrustPolicy.from_env() if policy is None else policy
        """Verifies every HTTPS origin."""
        self.proxy_policy = self.policy if proxy_policy is None else proxy_policy
        """Verifies the TLS hop to an ``https://`` proxy."""
        self.enforce = enforce
        """When true, a request's own ``verify`` is ignored: `policy` always applies."""
        self.bound_to: str | None = None
        """The base URL set by `mount`; requests for any other origin are refused."""
        self._connect_contexts()
        super().__init__(**kwargs)

    def _connect_contexts(self) -> None:
        self._origin: LiveContext = live_context(self.policy)
        self._proxy: LiveContext = live_context(self.proxy_policy, proxy_hop=True)
        self._bound: Origin | None = origin_of(self.bound_to) if self.bound_to else None
        self._bound_spelling: tuple[str, str] | None = None  # last scheme and netloc found bound
        self._request_policies: dict[str, TrustPolicy] = {}
        if _POOL_HOOK_LACKS_TLS_ARGUMENTS:
            self._send_args = threading.local()
        warn_if_off(self.policy)
        warn_if_off(self.proxy_policy)

    def bind(self, base_url: str) -> None:
        """Makes this adapter refuse requests for any origin other than `base_url`'s."""
        self.bound_to = base_url
        self._bound = origin_of(base_url)
        self._bound_spelling = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Contexts cannot be pickled: the policies travel, and contexts are rebuilt here.
        for name in ("policy", "proxy_policy", "enforce", "bound_to"):
            setattr(self, name, state[name])
        self._connect_contexts()
        super().__setstate__(state)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = DEFAULT_POOLBLOCK, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        _use_quiet_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        """Returns the manager for `proxy`; an ``https://`` proxy is verified by `proxy_policy`."""
        known = self.proxy_manager.get(proxy)
        if proxy.lower().startswith("https:"):
            context = self._proxy.current()
            if known is not None and known.proxy_config.ssl_context is not context:
                # The proxy's CA files changed; requests keeps one manager per proxy URL.
                self.proxy_manager.pop(proxy, None)
                known.clear()
            proxy_kwargs["proxy_ssl_context"] = context
        manager: PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if manager is not known:
            _use_quiet_pools(manager)
            log.debug("Using proxy %s", without_credentials(proxy))
        return manager

    # requests has called a different method to get a pool in each generation; all of them
    # lead to `_pool_for`. `build_connection_pool_key_attributes` (2.32.3+) is not enough on
    # its own: it is not told the proxy, which decides the context of an http:// URL sent
    # through an https:// proxy.

    def get_connection_with_tls_context(
        self,
        request: PreparedRequest,
        verify: bool | str | None,
        proxies: dict[str, str] | None = None,
        cert: Any = None,
    ) -> HTTPConnectionPool:
        """Returns the pool for `request` (requests >= 2.32.2)."""
        return self._pool_for(request.url or "", verify, proxies, cert)

    _get_connection = get_connection_with_tls_context  # its name in 2.32.0 and 2.32.1

    def get_connection(self, url: str, proxies: dict[str, str] | None = None) -> HTTPConnectionPool:
        """Returns the pool for `url` (requests <= 2.31), with the TLS arguments `send` kept."""
        args = getattr(self, "_send_args", None)  # None when called by other code on >= 2.32
        return self._pool_for(
            url, getattr(args, "verify", True), proxies, getattr(args, "cert", None)
        )

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> Response:
        """Sends `request` like `HTTPAdapter.send`; a TLS refusal says which trust refused it."""
        if _POOL_HOOK_LACKS_TLS_ARGUMENTS:
            self._send_args.verify, self._send_args.cert = verify, cert
        try:
            return super().send(request, stream, timeout, verify, cert, proxies)
        except (SSLError, ProxyError) as e:
            if not any(isinstance(c, ssl.SSLError) for c in causes(e)):
                raise  # a proxy that refused us otherwise, e.g. with 407
            note = self._refusal_note(request.url or "", verify)
            if hasattr(e, "add_note"):  # Python >= 3.11: shown under the traceback
                e.add_note(note)
            log.debug("%s", note)
            raise

    def _refusal_note(self, url: str, verify: Any) -> str:
        """Returns which trust verified `url` (and its proxy), and how to learn more."""
        if self._policy_decides(verify):
            trust = f"the policy: {self.policy.describe()} (chosen by {_chosen_by(self.policy)})"
        else:
            trust = "the verify= given with the request"
        if self.proxy_policy != self.policy:
            trust += f"; the https:// proxy against: {self.proxy_policy.describe()}"
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/"  # as asked, no user info
        return (
            f"cmem_adapter checked {origin} against {trust}."
            f" `cmem-adapter check {origin}` explains the refusal"
        )

    def cert_verify(self, conn: HTTPConnectionPool, url: str, verify: Any, cert: Any) -> None:
        """Leaves the pool as `_pool_for` built it: its context holds trust and client cert.

        requests would write certifi or the ``verify`` path and the client certificate onto
        the pool, for urllib3 to load into the shared context (requests#6726, urllib3#3623).
        """

    def _pool_for(
        self, url: str, verify: Any, proxies: dict[str, str] | None, cert: Any
    ) -> HTTPConnectionPool:
        target = urlsplit(url)
        if self._bound is not None:
            self._refuse_unless_bound(target)
        scheme = target.scheme.lower()
        proxy = select_proxy(url, proxies)
        manager: PoolManager = self.poolmanager
        if proxy:
            proxy = prepend_scheme_if_needed(proxy, "http")
            if not parse_url(proxy).host:
                raise InvalidProxyURL(
                    "Please check proxy URL. It is malformed and could be missing the host."
                )
            manager = self.proxy_manager_for(proxy)
        if scheme == "https":
            context = self._origin_context(verify, cert)
        elif proxy and proxy.lower().startswith("https:"):
            # An http:// URL forwarded by an https:// proxy: the only TLS hop is the proxy's.
            # urllib3 <= 2.7 uses the pool's context for it (urllib3#2577).
            context = self._proxy.current()
        else:
            return manager.connection_from_host(target.hostname, target.port, scheme)
        pool_kwargs = {
            "ssl_context": context,
            "cert_reqs": "CERT_REQUIRED" if context.verified else "CERT_NONE",
        }
        return manager.connection_from_host(
            target.hostname, target.port, scheme, pool_kwargs=pool_kwargs
        )

    def _refuse_unless_bound(self, target: SplitResult) -> None:
        """Raises `InvalidURL` unless `target` is the origin this adapter is mounted for."""
        spelling = (target.scheme, target.netloc)
        if spelling == self._bound_spelling:  # parsing the host costs more than the request
            return
        scheme, host, port = origin = origin_of(target)
        if origin != self._bound:
            raise InvalidURL(
                f"This TrustAdapter is mounted for {self.bound_to} only; it refuses to send a"
                f" request for {scheme}://{host}:{port}/"
            )
        self._bound_spelling = spelling

    def _policy_decides(self, verify: Any) -> bool:
        """Tells whether the policy verifies the origin, rather than the request's `verify`."""
        # verify=False under an off policy is the same choice (cmempy passes it on every
        # request): the policy's context, which has warned once, not urllib3's every time.
        off_anyway = verify is False and self.policy.source == "off"
        return self.enforce or not _chosen(verify) or off_anyway

    def _origin_context(self, verify: Any, cert: Any) -> FrozenContext:
        client_cert = _client_cert(cert)
        if self._policy_decides(verify):
            live = self._origin if client_cert is None else live_context(self.policy, client_cert)
        elif verify is False:
            live = live_context(TrustPolicy("off"), client_cert, by_request=True)
        else:
            path = os.path.abspath(os.fsdecode(verify))
            policy = self._request_policies.get(path)
            if policy is None:
                policy = self._request_policies[path] = request_policy(path)
            live = live_context(policy, client_cert)
        return live.current()


def _chosen(verify: Any) -> bool:
    """Tells whether a request's `verify` is the caller's choice, not a default or the env's.

    Only ``False`` and a non-empty path are choices; True, None, "", 0 and the like leave the
    policy in charge (never less verification than it says).
    """
    if verify is False:
        return True
    if not isinstance(verify, (str, bytes, os.PathLike)) or not os.fsdecode(verify).strip():
        return False
    # A str equal to either variable is what Session.merge_environment_settings put there.
    return verify not in (os.environ.get("REQUESTS_CA_BUNDLE"), os.environ.get("CURL_CA_BUNDLE"))


def _client_cert(cert: Any) -> ClientCert | None:
    """Returns the client certificate as absolute paths; requests' check and message if missing."""
    if not cert:
        return None
    given = (cert,) if isinstance(cert, (str, bytes, os.PathLike)) else cert
    paths = tuple(os.path.abspath(os.fsdecode(p)) for p in given if p is not None)
    for path in paths:
        if not os.path.exists(path):
            raise OSError(f"Could not find the TLS certificate file, invalid path: {path}")
    return paths


def _chosen_by(policy: TrustPolicy) -> str:
    """Returns what chose `policy`: its constructor for one made in code, then each setting."""
    labels = [s.label for s in policy.settings if s.origin != "argument"]
    if len(labels) < len(policy.settings):
        labels.insert(0, f"TrustPolicy.{policy.source}() in code")
    return ", ".join(labels) or "the defaults"


class _QuietOffPool(HTTPSConnectionPool):
    """An HTTPS pool that spares urllib3's per-request warning for deliberately unverified hops.

    urllib3 warns about every request on an unverified connection. A policy set to ``off`` has
    warned once already (`OFF_WARNING`); a request's own ``verify=False`` still warns.
    """

    shown_as = "HTTPSConnectionPool"
    """The name errors show: urllib3's, so that messages read as with stock requests."""

    def __str__(self) -> str:
        return f"{self.shown_as}(host={self.host!r}, port={self.port!r})"

    @functools.cached_property
    def _warns(self) -> bool:
        """Tells whether urllib3 should warn about this pool's requests (its contexts are fixed)."""
        hops = (self.conn_kw.get("ssl_context"), getattr(self.proxy_config, "ssl_context", None))
        return any(_warned_about(context) for context in hops)

    def _validate_conn(self, conn: Any) -> None:
        if self._warns:
            super()._validate_conn(conn)
            return
        HTTPConnectionPool._validate_conn(self, conn)
        if getattr(conn, "sock", None) is None:  # connect now, as urllib3 does
            conn.connect()


def _warned_about(context: ssl.SSLContext | None) -> bool:
    """Tells whether urllib3 should warn about a hop: unverified, and not by the policy."""
    return (
        context is not None
        and context.verify_mode == ssl.CERT_NONE
        and not getattr(context, "unverified_by_choice", False)
    )


def _quiet_pool_class(base: Any) -> type[HTTPSConnectionPool]:
    if base is HTTPSConnectionPool:
        return _QuietOffPool
    name = base.__name__  # e.g. SOCKS pools
    return type(f"QuietOff{name}", (_QuietOffPool, base), {"shown_as": name})


def _use_quiet_pools(manager: PoolManager) -> None:
    classes = manager.pool_classes_by_scheme
    https = classes["https"]
    if not issubclass(https, _QuietOffPool):
        manager.pool_classes_by_scheme = {**classes, "https": _quiet_pool_class(https)}
