"""Where CA certificates come from: a PEM file, a directory, PEM text, or the system's files.

Everything here reads and checks; nothing builds a context (see `contexts`).
"""

from __future__ import annotations

import os
import re
import ssl
import stat
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple, Union

from .errors import ConfigError, bad_value
from .settings import Setting

_CERTIFICATE = re.compile(
    r"-----BEGIN (?:X509 )?CERTIFICATE-----.+?-----END (?:X509 )?CERTIFICATE-----", re.DOTALL
)
_CERTIFICATE_BEGIN = re.compile(r"-----BEGIN (?:X509 )?CERTIFICATE-----")
_TRUSTED_CERTIFICATE = "-----BEGIN TRUSTED CERTIFICATE-----"
_MAX_BYTES = 64 * 1024 * 1024
"""No CA bundle is this big (the system's is about 200 KB): a bigger file is a mistake."""
_PEM_LABEL = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")
_BINARY = re.compile(r"[^\x20-\x7e\s]")
"""A character no text file has: with a leading 0x30 (SEQUENCE), the sign of DER."""

# truststore's fallback list (truststore/_openssl.py, after certifi-system-store by C. Heimes),
# tried when OpenSSL's compiled-in default paths hold nothing.
_SYSTEM_CA_FILES = (
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/cert.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/ca-bundle.pem",
)
_HASHED_NAME = re.compile(r"^[0-9a-fA-F]{8}\.[0-9]$")

FileState = tuple[str, Union[tuple[int, int, int, int], None]]  # noqa: UP007 (3.10 at runtime)
"""A path and its (inode, device, size, mtime) — None when it cannot be stat'ed."""


def file_states(paths: Sequence[str]) -> tuple[FileState, ...]:
    """Returns what each path looks like on disk now; a change means "read it again"."""
    states: list[FileState] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            states.append((path, None))
        else:
            states.append((path, (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)))
    return tuple(states)


class CA(NamedTuple):
    """CA certificates to trust: a PEM file, a directory of PEM files, or PEM text."""

    kind: Literal["file", "dir", "pem"]
    value: str
    """The absolute path, or the PEM text itself."""
    setting: Setting
    """The setting that named these CAs, for messages; not part of equality."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CA) and (self.kind, self.value) == (other.kind, other.value)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((self.kind, self.value))

    @classmethod
    def locate(
        cls, value: str | bytes | os.PathLike[str], setting: Setting, base_dirs: Sequence[str] = ()
    ) -> CA:
        """Returns the CAs `value` names: PEM text as is, a path made absolute.

        A relative path is looked up in the current directory, then in each of `base_dirs`.
        Raises `ConfigError` naming every path tried when none exists.
        """
        if isinstance(value, bytes) and b"-----BEGIN" in value:
            value = value.decode("latin-1")
        if isinstance(value, str) and "-----BEGIN" in value:
            return cls("pem", value, setting)
        path = os.fsdecode(value)
        if not path.strip():
            raise bad_value(
                setting.label,
                path,
                "an empty path names no CA file (it would mean the current directory)",
                f"set {setting.key} to a PEM file or a directory of PEM files, or leave it unset",
            )
        tried = [os.path.abspath(path)]
        if not os.path.isabs(path):
            tried += [os.path.join(base, path) for base in base_dirs]
        for candidate in tried:
            if os.path.isdir(candidate):
                return cls("dir", candidate, setting)
            if os.path.isfile(candidate):
                return cls("file", candidate, setting)
            if os.path.lexists(candidate):
                what = "exists, but" if os.path.exists(candidate) else "is a symbolic link that"
                raise bad_value(
                    setting.label,
                    path,
                    f"{candidate} {what} is not a regular file or directory"
                    + ("" if os.path.exists(candidate) else " (it leads nowhere, or in a loop)"),
                    f"point {setting.key} at a PEM file or a directory of PEM files",
                )
        raise bad_value(
            setting.label,
            path,
            f"no such file or directory (looked at {', '.join(tried)})",
            f"point {setting.key} at an existing PEM file or a directory of PEM files",
        )

    def describe(self) -> str:
        """Returns the path, or "PEM text" for CAs given in memory."""
        return "PEM text" if self.kind == "pem" else self.value

    def read(self) -> tuple[list[str], tuple[FileState, ...]]:
        """Returns the PEM certificate blocks, and the state of the files they were read from.

        Raises `ConfigError` for anything that holds no certificate (missing, unreadable,
        empty, DER, a key, garbage).
        """
        if self.kind == "pem":
            return self._certificates(self.value, "the PEM text"), ()
        if self.kind == "file":
            states = file_states([self.value])
            return self._certificates(self._read_text(self.value), "the file"), states
        return self._read_directory()

    def load_into(self, context: ssl.SSLContext) -> tuple[FileState, ...]:
        """Loads these CAs into `context`; returns the state of the files they came from.

        Raises `ConfigError` when OpenSSL refuses a certificate, naming the first bad one.
        """
        blocks, states = self.read()
        try:
            context.load_verify_locations(cadata="\n".join(blocks))
        except (ssl.SSLError, TypeError, ValueError) as e:  # TypeError: non-ASCII text
            raise self._unparsable(blocks, e) from None
        return states

    def _unparsable(self, blocks: Sequence[str], error: Exception) -> ConfigError:
        which = "the certificates"
        for number, block in enumerate(blocks, 1):
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=block)
            except (ssl.SSLError, TypeError, ValueError) as block_error:
                which, error = f"certificate #{number} of {len(blocks)}", block_error
                break
        reason = getattr(error, "reason", None) or error
        return self._bad(
            f"{which} could not be parsed ({reason})",
            "replace the damaged certificate with a good PEM copy",
        )

    def _bad(self, problem: str, fix: str) -> ConfigError:
        value = f"PEM text ({len(self.value)} characters)" if self.kind == "pem" else self.value
        return bad_value(self.setting.label, value, problem, fix)

    def _read_text(self, path: str) -> str:
        """Returns the file's bytes as latin-1 text: PEM is ASCII, anything else stays visible.

        Only a regular file is read: a FIFO or a device put in the bundle's place (also later,
        during rotation) would block or never end.
        """
        try:
            # O_NONBLOCK: opening a FIFO does not wait for a writer; regular files ignore it.
            with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
                found = os.fstat(f.fileno())
                if not stat.S_ISREG(found.st_mode):
                    raise self._bad(
                        f"{path} is not a regular file",
                        f"point {self.setting.key} at a PEM file or a directory of PEM files",
                    )
                if found.st_size > _MAX_BYTES:
                    raise self._bad(
                        f"{path} is {found.st_size} bytes: too large to be a CA bundle",
                        f"point {self.setting.key} at the PEM file of CA certificates",
                    )
                return f.read().decode("latin-1")
        except FileNotFoundError:
            raise self._bad(
                f"{path} no longer exists", f"point {self.setting.key} at an existing PEM file"
            ) from None
        except OSError as e:
            raise self._bad(
                f"cannot read {path} ({e.strerror})",
                f"make it readable for this user, or point {self.setting.key} at a readable copy",
            ) from None

    def _certificates(self, text: str, what: str) -> list[str]:
        key = self.setting.key
        if _TRUSTED_CERTIFICATE in text:
            # Loaded as plain certificates, their trust settings (rejected uses) would be lost.
            raise self._bad(
                f"{what} holds OpenSSL 'TRUSTED CERTIFICATE' blocks, whose trust settings cannot"
                " be kept here",
                f"point {key} at a bundle of plain 'BEGIN CERTIFICATE' blocks (on RHEL and"
                " Fedora: /etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem), or use"
                " SSL_VERIFY=system",
            )
        blocks = _CERTIFICATE.findall(text)
        if len(_CERTIFICATE_BEGIN.findall(text)) > len(blocks):
            raise self._bad(
                f"{what} has a certificate with no END line: it looks cut off or half-written",
                f"write the whole file again, then point {key} at it",
            )
        if blocks:
            return blocks
        if not text.strip():
            raise self._bad(
                f"{what} is empty", f"point {key} at a PEM file holding CA certificates"
            )
        labels = sorted(set(_PEM_LABEL.findall(text)))
        if not labels and text[:1] == "\x30" and _BINARY.search(text[:64]):
            raise self._bad(
                f"{what} is DER (binary), not PEM",
                f"convert it with 'openssl x509 -inform der -in {self.value} -out ca.pem'"
                f" and point {key} at ca.pem",
            )
        if not labels:
            raise self._bad(
                f"{what} is not PEM (no '-----BEGIN CERTIFICATE-----' line)",
                f"point {key} at a PEM file holding CA certificates",
            )
        if any("PRIVATE KEY" in label for label in labels):
            raise self._bad(
                f"{what} holds a private key but no certificate",
                f"point {key} at the CA certificate(s); a CA bundle never needs a key",
            )
        raise self._bad(
            f"{what} holds no certificate (only {', '.join(labels)})",
            f"point {key} at a PEM file holding CA certificates",
        )

    def _read_directory(self) -> tuple[list[str], tuple[FileState, ...]]:
        try:
            names = sorted(os.listdir(self.value))
        except OSError as e:
            raise self._bad(
                f"cannot list the directory ({e.strerror})",
                f"make it readable for this user, or point {self.setting.key} at a readable copy",
            ) from None
        paths = [os.path.join(self.value, n) for n in names if not n.startswith(".")]
        paths = [p for p in paths if os.path.isfile(p)]
        states = file_states([self.value, *paths])
        blocks: list[str] = []
        for path in paths:
            text = self._read_text(path)
            if _TRUSTED_CERTIFICATE in text or _CERTIFICATE_BEGIN.search(text):
                blocks += self._certificates(text, f"the file {path}")  # checked as a bundle
        if not blocks:
            raise self._bad(
                f"the directory holds no PEM certificate ({len(paths)}"
                f" file{'s' * (len(paths) != 1)} looked at)",
                f"put CA certificates in PEM form there, or point {self.setting.key} at a PEM file",
            )
        return blocks, states


class SystemStore(NamedTuple):
    """The files that hold the operating system's trust store on Linux and other Unix systems.

    They are the ones truststore would use: OpenSSL's default paths, honouring
    ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``, then truststore's list of well-known bundles.
    """

    cafile: str | None
    capath: str | None

    @classmethod
    def find(cls, cert_file: Setting | None, cert_dir: Setting | None) -> SystemStore:
        """Returns the system store, with ``SSL_CERT_FILE``/``SSL_CERT_DIR`` if they are set.

        Raises `ConfigError` when either variable names a missing path (OpenSSL would skip it
        silently and trust something else), or when no trust store is found at all.
        """
        defaults = ssl.get_default_verify_paths()
        cafile = cls._explicit(cert_file, os.path.isfile, "file")
        # SSL_CERT_DIR may list directories, as for OpenSSL: "/etc/ssl/certs:/opt/ca".
        capath = cls._explicit(cert_dir, os.path.isdir, "directory", os.pathsep)
        if cert_file is None and os.path.isfile(defaults.openssl_cafile):
            cafile = defaults.openssl_cafile
        if cert_dir is None and os.path.isdir(defaults.openssl_capath):
            capath = defaults.openssl_capath
        store = cls(cafile, capath)
        if cafile or any(_HASHED_NAME.match(n) for d in store.dirs() for n in os.listdir(d)):
            return store
        for candidate in _SYSTEM_CA_FILES:
            if os.path.isfile(candidate):
                return cls(candidate, None)
        raise ConfigError(
            "SSL_VERIFY=system: no system trust store found (OpenSSL's"
            f" {defaults.openssl_cafile} and {defaults.openssl_capath} hold nothing, and none of"
            f" {', '.join(_SYSTEM_CA_FILES)} exists). Fix: install the distribution's"
            " ca-certificates package, or set SSL_CERT_FILE to a CA bundle"
        )

    @staticmethod
    def _explicit(
        setting: Setting | None, exists: Callable[[str], bool], kind: str, separator: str = ""
    ) -> str | None:
        if setting is None:
            return None
        values = setting.value.split(separator) if separator else [setting.value]
        paths = [os.path.abspath(value) for value in values if value]
        for path in paths:
            if not exists(path):
                raise bad_value(
                    setting.label,
                    setting.value,
                    f"no such {kind}: {path}; OpenSSL would silently ignore it",
                    f"point {setting.key} at an existing {kind}, or unset it",
                )
        return separator.join(paths) if separator else paths[0]

    def dirs(self) -> list[str]:
        """Returns the hashed-certificate directories (SSL_CERT_DIR may list several)."""
        return self.capath.split(os.pathsep) if self.capath else []

    def paths(self) -> list[str]:
        """Returns the file and directories to watch for changes."""
        return ([self.cafile] if self.cafile else []) + self.dirs()

    def load_into(self, context: ssl.SSLContext) -> tuple[FileState, ...]:
        """Loads the store into `context`; returns the state of its files.

        Raises `ConfigError` when they cannot be loaded (gone, empty, half-written, or no
        longer a regular file, which OpenSSL would block on or read without end).
        """
        states = file_states(self.paths())
        reason = None
        if self.cafile and not os.path.isfile(self.cafile):
            reason = f"{self.cafile} is not a regular file"
        else:
            try:
                context.load_verify_locations(cafile=self.cafile, capath=self.capath)
            except OSError as e:  # ssl.SSLError included: an empty or non-PEM file
                reason = getattr(e, "reason", None) or e.strerror or str(e)
        if reason is not None:
            raise ConfigError(
                f"SSL_VERIFY=system: {self.describe()} cannot be loaded ({reason})."
                " Fix: point SSL_CERT_FILE at a PEM file of CA certificates, or unset it"
            )
        return states

    def describe(self) -> str:
        """Returns "the system trust store (file, directory)"."""
        return f"the system trust store ({', '.join(self.paths())})"
