"""Putting adapters where requests will use them: on a session, host-exact, or on every session."""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.exceptions import RequestException
from requests.models import PreparedRequest, Response

from .adapter import DEFAULT_PORTS, Origin, TrustAdapter, origin_of
from .config import CMEM_BASE_URI, CMEMC_CONFIG_FILE, CMEMC_CONNECTION, ENV_KEYS, CmemcConfig
from .errors import ConfigError, redact
from .policy import TrustPolicy
from .settings import first

log = logging.getLogger("cmem_adapter")


def mount_prefixes(base_url: str) -> list[str]:
    """Returns the session prefixes that match `base_url`'s origin and nothing else.

    The host is lower-cased and IDNA-encoded as requests does it, each prefix ends in "/" (so
    ``https://h:8443`` never matches ``https://h:8443.evil.net/`` or ``https://h:8443@evil``),
    and the default port is mounted both with and without its number. The path is ignored:
    trust belongs to the origin. Raises `ConfigError` for anything that is not such a URL.
    """
    prepared = PreparedRequest()
    try:
        prepared.prepare_url(base_url, None)
        parts = urlsplit(prepared.url or "")
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except (RequestException, ValueError) as e:
        raise _bad_base(base_url, f"not a URL ({redact(str(e))})") from None
    if scheme not in DEFAULT_PORTS or not host:
        raise _bad_base(base_url, "not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise _bad_base(base_url, "it holds credentials, which a mount prefix cannot match")
    netloc = f"[{host}]" if ":" in host else host
    default = DEFAULT_PORTS[scheme]
    if port is None or port == default:
        return [f"{scheme}://{netloc}/", f"{scheme}://{netloc}:{default}/"]
    return [f"{scheme}://{netloc}:{port}/"]


def _bad_base(base_url: str, problem: str) -> ConfigError:
    return ConfigError(
        f"base URL {redact(repr(base_url))}: {problem}. Fix: pass the server's address, e.g."
        " https://cmem.example.com or https://127.0.0.1:8443"
    )


class _OriginRouter(BaseAdapter):
    """A session's adapter for a scheme, which sends requests for mounted origins to theirs.

    requests picks an adapter by URL prefix, and a URL can name a mounted origin without
    matching its prefix: with user info (``https://user@host/``), or another spelling of an
    IP address (``https://127.1/``). Such a request would silently get the session's default
    adapter and requests' own trust; this sends it to the origin's `TrustAdapter`. Anything
    else goes to the adapter that was there before (`fallback`), unchanged.
    """

    def __init__(self, fallback: BaseAdapter) -> None:
        super().__init__()
        self.fallback = fallback
        self.routes: dict[Origin, BaseAdapter] = {}

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        """Sends `request` with the adapter of its origin, or with `fallback`."""
        adapter = self.routes.get(origin_of(request.url or ""), self.fallback)
        return adapter.send(request, *args, **kwargs)

    def close(self) -> None:
        """Closes `fallback` (the session closes the mounted adapters itself)."""
        self.fallback.close()

    def __getattr__(self, name: str) -> Any:
        # What code reads from the session's adapter (max_retries, poolmanager...) is the
        # fallback's. Dunder and own names are not forwarded: pickle looks them up first.
        if name.startswith("__") or name in ("fallback", "routes"):
            raise AttributeError(name)
        return getattr(self.fallback, name)


def _mount(session: requests.Session, adapter: TrustAdapter, prefixes: list[str]) -> None:
    """Mounts `adapter` on `prefixes`, and routes other spellings of their origin to it."""
    for prefix in prefixes:
        session.mount(prefix, adapter)
    if adapter.bound_to is None:
        return
    scheme = prefixes[0].split(":", 1)[0] + "://"
    router = session.adapters.get(scheme)
    if not isinstance(router, _OriginRouter):
        router = _OriginRouter(router or HTTPAdapter())
        session.mount(scheme, router)
    router.routes[origin_of(adapter.bound_to)] = adapter


def mount(
    session: requests.Session,
    base_url: str,
    policy: TrustPolicy | None = None,
    **adapter_kwargs: Any,
) -> TrustAdapter:
    """Returns a new `TrustAdapter` mounted on `session` for `base_url`'s origin only.

    Every spelling of the origin goes to it (user info, other spellings of an IP address), and
    it refuses to send a request for any other origin. `policy` defaults to
    `TrustPolicy.from_env()`; `adapter_kwargs` go to `TrustAdapter`.
    """
    prefixes = mount_prefixes(base_url)
    adapter = TrustAdapter(policy, **adapter_kwargs)
    adapter.bind(prefixes[0])
    _mount(session, adapter, prefixes)
    log.debug("Mounted TrustAdapter (%s) on %s", adapter.policy.source, ", ".join(prefixes))
    return adapter


def mount_from_config(
    session: requests.Session,
    connection: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> TrustAdapter:
    """Returns a `TrustAdapter` mounted on the connection's ``CMEM_BASE_URI``, cmemc-style.

    The policy and the base URL come from cmemc's config.ini section (see
    `TrustPolicy.from_config`); a section without ``CMEM_BASE_URI`` raises `ConfigError`.
    """
    config = CmemcConfig.load(config_file, os.environ)
    layers = config.layers(connection, os.environ)
    base = first(layers, CMEM_BASE_URI)
    if base is None:
        where = f" in {config.path}" if config.path else ""
        raise ConfigError(
            f"{CMEM_BASE_URI} is not set for this connection{where} nor in the environment."
            f" Fix: add {CMEM_BASE_URI}=https://your.cmem.host to the section"
        )
    policy = TrustPolicy.resolve(layers, os.environ)
    return mount(session, base.value, policy)


class _InstalledPolicy:
    """The policy new sessions get: the one given to `install`, or else
    `TrustPolicy.from_config()`, resolved again whenever a variable it reads changes.

    Programs such as cmemc write their connection's settings into ``os.environ`` as they run,
    after ``install()`` or the start-up hook: new sessions follow them.
    """

    KEYS = (*ENV_KEYS, CMEMC_CONFIG_FILE, CMEMC_CONNECTION)

    def __init__(self, given: TrustPolicy | None) -> None:
        self._given = given
        self._seen = self._environment()
        self._policy = TrustPolicy.from_config() if given is None else given

    def current(self) -> TrustPolicy:
        """Returns the policy for a session created now."""
        if self._given is None:
            seen = self._environment()
            if seen != self._seen:
                self._policy, self._seen = TrustPolicy.from_config(), seen
        return self._policy

    def _environment(self) -> tuple[str | None, ...]:
        return tuple(map(os.environ.get, self.KEYS))


_install_lock = threading.Lock()
_original_init: Callable[..., None] | None = None


def install(policy: TrustPolicy | None = None, base_url: str | None = None) -> None:
    """Makes every `requests.Session` created from now on mount a `TrustAdapter`.

    That includes the throw-away session inside ``requests.get()`` and friends. The adapter is
    mounted for `base_url`'s origin only, or for every ``https://`` and ``http://`` URL (the
    latter for the TLS hop to an ``https://`` proxy). Without `policy`, each new session
    gets `TrustPolicy.from_config()` (the section ``CMEMC_CONNECTION`` names, then the
    environment, then ``[DEFAULT]``, as ``cmem-adapter check`` resolves it), resolved again
    only when one of its variables has changed. Calling it again replaces the settings; `ssl`
    is never patched, only ``requests.Session.__init__``.
    """
    global _original_init
    installed = _InstalledPolicy(policy)
    prefixes = mount_prefixes(base_url) if base_url else ["https://", "http://"]
    with _install_lock:
        original = _original_init or requests.Session.__init__

        @functools.wraps(original)
        def __init__(session: requests.Session, *args: Any, **kwargs: Any) -> None:
            original(session, *args, **kwargs)
            adapter = TrustAdapter(installed.current())
            if base_url:
                adapter.bind(prefixes[0])
            _mount(session, adapter, prefixes)

        requests.Session.__init__ = __init__  # type: ignore[method-assign,assignment]
        _original_init = original
    source = installed.current().source
    log.debug("Installed: new sessions mount TrustAdapter (%s) on %s", source, ", ".join(prefixes))


def uninstall() -> None:
    """Restores ``requests.Session.__init__`` exactly as it was before `install`."""
    global _original_init
    with _install_lock:
        if _original_init is not None:
            requests.Session.__init__ = _original_init  # type: ignore[method-assign]
            _original_init = None
