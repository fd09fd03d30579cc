"""TrustPolicy: which trust source verifies a connection, and which settings chose it."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Literal

import certifi

from .bundles import CA, SystemStore
from .config import CmemcConfig
from .contexts import live_context
from .errors import ConfigError
from .settings import (
    CURL_CA_BUNDLE,
    REQUESTS_CA_BUNDLE,
    SSL_CERT_DIR,
    SSL_CERT_FILE,
    SSL_VERIFY,
    Layer,
    Setting,
    first,
    verify_mode,
)

log = logging.getLogger("cmem_adapter")

Source = Literal["certifi", "bundle", "system", "off"]
CAInput = str | bytes | os.PathLike[str]
"""A path to a PEM file or directory, or PEM text (str containing "-----BEGIN", or bytes)."""

OFF_WARNING = "SSL verification is disabled (SSL_VERIFY=False)."
_USES_TRUSTSTORE = sys.platform in ("darwin", "win32")


class TrustPolicy:
    """What one connection trusts: exactly one source, plus extra CAs for certifi and system.

    Build it with a constructor (`certifi`, `bundle`, `system`, `off`, `from_env`,
    `from_config`). Building loads the CAs, so every problem raises `ConfigError` here, not at
    request time. Policies are immutable values; equal policies share one SSL context.
    """

    __slots__ = ("_hash", "ca", "settings", "source", "system_store")

    source: Source
    """One of ``"certifi"``, ``"bundle"``, ``"system"``, ``"off"``."""
    ca: CA | None
    """For ``bundle``, the CAs trusted; for ``certifi`` and ``system``, extra CAs."""
    system_store: SystemStore | None
    """For ``system`` outside macOS and Windows, the files holding the OS trust store."""
    settings: tuple[Setting, ...]
    """The settings that chose this policy, each with its origin (not part of equality)."""
    _hash: int

    def __init__(
        self,
        source: Source,
        ca: CA | None = None,
        system_store: SystemStore | None = None,
        settings: tuple[Setting, ...] = (),
    ) -> None:
        """Builds a policy from resolved parts: use the constructors, which resolve them."""
        if source not in ("certifi", "bundle", "system", "off"):
            raise ConfigError(
                f"TrustPolicy source {source!r} is not one of certifi, bundle, system, off"
            )
        if (source == "bundle" and ca is None) or (source == "off" and ca is not None):
            raise ConfigError(f"build this policy with TrustPolicy.{source}()")
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "ca", ca)
        object.__setattr__(self, "system_store", system_store)
        object.__setattr__(self, "settings", settings)
        object.__setattr__(self, "_hash", hash(self._key()))  # contexts are looked up by it
        live_context(self).check()  # an equal policy's context may predate a broken file

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("TrustPolicy is immutable")

    def _key(self) -> tuple[object, ...]:
        return self.source, self.ca, self.system_store

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrustPolicy) and self._key() == other._key()

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[object, ...]:
        # Unpickling builds the policy again, and with it the context (contexts cannot travel).
        return TrustPolicy, (self.source, self.ca, self.system_store, self.settings)

    @classmethod
    def certifi(cls, extra_ca: CAInput | None = None) -> TrustPolicy:
        """Returns a policy trusting Mozilla's roots from certifi, plus `extra_ca` if given."""
        return cls._made("certifi", extra_ca, "extra_ca")

    @classmethod
    def bundle(cls, ca: CAInput) -> TrustPolicy:
        """Returns a policy trusting only the CAs in `ca`: a PEM file, a directory, or PEM text."""
        return cls._made("bundle", ca, "ca")

    @classmethod
    def system(cls, extra_ca: CAInput | None = None) -> TrustPolicy:
        """Returns a policy trusting the operating system's store, plus `extra_ca` if given."""
        return cls._made("system", extra_ca, "extra_ca")

    @classmethod
    def off(cls) -> TrustPolicy:
        """Returns a policy that verifies nothing. Adapters using it warn once per process."""
        return cls._made("off", None, "")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrustPolicy:
        """Returns the policy ``SSL_VERIFY`` and ``REQUESTS_CA_BUNDLE`` ask for.

        ``CURL_CA_BUNDLE`` stands in for an unset ``REQUESTS_CA_BUNDLE``; a relative path is
        made absolute against the current directory. `environ` replaces `os.environ`
        entirely when given.
        """
        env = os.environ if environ is None else environ
        return cls.resolve([Layer("env", env)], env)

    @classmethod
    def from_config(
        cls,
        connection: str | None = None,
        config_file: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> TrustPolicy:
        """Returns the policy for a cmemc ``config.ini`` connection, over the environment.

        Precedence: the named section, then the environment, then ``[DEFAULT]``. The file and
        section default as in cmemc (``CMEMC_CONFIG_FILE``, ``CMEMC_CONNECTION``); without a
        file, this is `from_env`. A relative bundle path is looked up in the current
        directory, then in the config file's. `environ` replaces `os.environ` when given.
        """
        env = os.environ if environ is None else environ
        config = CmemcConfig.load(config_file, env)
        return cls.resolve(config.layers(connection, env), env)

    @classmethod
    def resolve(cls, layers: Sequence[Layer], environ: Mapping[str, str]) -> TrustPolicy:
        """Returns the policy the settings in `layers` (highest precedence first) ask for.

        ``SSL_CERT_FILE``/``SSL_CERT_DIR`` for the system store are read from `environ`.
        """
        verify = first(layers, SSL_VERIFY)
        bundle = first(layers, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE)
        mode = verify_mode(verify)
        settings = tuple(s for s in (verify, bundle) if s is not None)
        for setting in settings:
            log.debug("%s", setting)
        if mode == "false":
            if bundle is not None:
                log.debug("%s ignored: verification is off", bundle.key)
            return cls._announced("off", None, settings, environ)
        ca = None
        if bundle is not None:
            base_dirs = [bundle.base_dir] if bundle.base_dir else []
            ca = CA.locate(bundle.value, bundle, base_dirs)
        if mode == "true":
            return cls._announced("bundle" if ca else "certifi", ca, settings, environ)
        return cls._announced(mode, ca, settings, environ)

    @classmethod
    def _made(cls, source: Source, ca_input: CAInput | None, argument: str) -> TrustPolicy:
        settings: tuple[Setting, ...] = (
            Setting(SSL_VERIFY, "false" if source == "off" else source, "argument"),
        )
        ca = None
        if ca_input is not None:
            shown = "PEM text" if _is_pem(ca_input) else os.fsdecode(ca_input)
            named = Setting(argument, shown, "argument")
            ca = CA.locate(ca_input, named)
            settings += (named,)
        return cls._announced(source, ca, settings, os.environ)

    @classmethod
    def _announced(
        cls,
        source: Source,
        ca: CA | None,
        settings: tuple[Setting, ...],
        environ: Mapping[str, str],
    ) -> TrustPolicy:
        store = None
        if source == "system" and not _USES_TRUSTSTORE:
            env = Layer("env", environ)
            cert_file, cert_dir = env.get(SSL_CERT_FILE), env.get(SSL_CERT_DIR)
            for setting in (cert_file, cert_dir):
                if setting is not None:
                    log.debug("%s", setting)
                    settings += (setting,)
            store = SystemStore.find(cert_file, cert_dir)
        policy = cls(source, ca, store, settings)
        log.debug("%s", policy.describe())
        return policy

    def describe(self) -> str:
        """Returns the one line naming the source, e.g. "CA bundle loaded from /etc/ca.pem"."""
        extra = f", plus extra CAs from {self.ca.describe()}" if self.ca else ""
        if self.source == "bundle":
            assert self.ca is not None
            return f"CA bundle loaded from {self.ca.describe()}"
        if self.source == "certifi":
            return f"Trusting certifi's CA bundle (certifi {certifi.__version__}){extra}"
        if self.source == "system":
            store = self.system_store.describe() if self.system_store else "truststore"
            return f"Trusting {store}{extra}"
        return "Not verifying TLS certificates (SSL_VERIFY=false)"

    def __repr__(self) -> str:
        ca = f", ca={self.ca.describe()!r}" if self.ca else ""
        return f"TrustPolicy({self.source!r}{ca})"


def _is_pem(value: CAInput) -> bool:
    if isinstance(value, bytes):
        return b"-----BEGIN" in value
    return isinstance(value, str) and "-----BEGIN" in value


_warned: set[TrustPolicy] = set()


def warn_if_off(policy: TrustPolicy) -> None:
    """Logs `OFF_WARNING` at WARNING, once per process for each ``off`` policy."""
    if policy.source == "off" and policy not in _warned:
        _warned.add(policy)
        log.warning(OFF_WARNING)


def request_policy(verify: str) -> TrustPolicy:
    """Returns the policy for a request's own ``verify=<path>``: only the CAs found there."""
    setting = Setting("verify", verify, "argument", "given with the request")
    return TrustPolicy("bundle", CA.locate(verify, setting), None, (setting,))
