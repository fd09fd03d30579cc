"""Configuration values that remember where they came from, and the precedence between them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

from .errors import bad_value, redact

Origin = Literal["argument", "config", "env", "default"]

SSL_VERIFY = "SSL_VERIFY"
REQUESTS_CA_BUNDLE = "REQUESTS_CA_BUNDLE"
CURL_CA_BUNDLE = "CURL_CA_BUNDLE"
SSL_CERT_FILE = "SSL_CERT_FILE"
SSL_CERT_DIR = "SSL_CERT_DIR"

VerifyMode = Literal["true", "false", "certifi", "system"]
_VERIFY_WORDS: dict[str, VerifyMode] = {
    **dict.fromkeys(("true", "1", "yes", "on"), "true"),
    **dict.fromkeys(("false", "0", "no", "off"), "false"),
    "certifi": "certifi",
    "system": "system",
    "truststore": "system",
}


class Setting(NamedTuple):
    """One configuration value, with the layer that set it."""

    key: str
    value: str
    origin: Origin
    where: str = ""
    """Which file and section, for a value from a config file."""
    base_dir: str | None = None
    """The config file's directory: a relative path not found in the current one is tried here."""

    @property
    def secret(self) -> bool:
        """True for keys whose value must never be shown (secrets, passwords, tokens)."""
        key = self.key.upper()
        return any(word in key for word in ("SECRET", "PASSWORD", "TOKEN"))

    @property
    def label(self) -> str:
        """Returns "KEY set by ORIGIN (where)", the start of every message about this value."""
        where = f" ({self.where})" if self.where else ""
        return f"{self.key} set by {self.origin}{where}"

    @property
    def shown(self) -> str | None:
        """Returns the value as it may be shown: short for PEM text, URL passwords masked;
        None for a secret."""
        if self.secret:
            return None
        if "-----BEGIN" in self.value:
            return f"PEM text ({len(self.value)} characters)"
        return redact(self.value)

    def __str__(self) -> str:
        """Returns the debug line, e.g. "SSL_VERIFY set by env to false"; secrets without value."""
        said = f"{self.key} set by {self.origin}"
        return said if self.shown is None else f"{said} to {self.shown}"


class Layer(NamedTuple):
    """One source of settings (arguments, a config section, the environment, ...)."""

    origin: Origin
    values: Mapping[str, str]
    where: str = ""
    base_dir: str | None = None

    def get(self, key: str) -> Setting | None:
        """Returns the setting for `key`, or None when it is missing or empty."""
        value = self.values.get(key)
        if value is None or not str(value).strip():
            return None
        return Setting(key, str(value).strip(), self.origin, self.where, self.base_dir)


def first(layers: Sequence[Layer], *keys: str) -> Setting | None:
    """Returns the first setting found, highest layer first; within a layer, `keys` in order."""
    for layer in layers:
        for key in keys:
            setting = layer.get(key)
            if setting is not None:
                return setting
    return None


def verify_mode(setting: Setting | None) -> VerifyMode:
    """Returns what an SSL_VERIFY value asks for; unset means "true"."""
    if setting is None:
        return "true"
    mode = _VERIFY_WORDS.get(setting.value.lower())
    if mode is None:
        raise bad_value(
            setting.label,
            setting.value,
            "not an accepted value",
            f"set {setting.key} to one of true, false, 1, 0, yes, no, on, off, certifi, system,"
            " truststore (any case), or leave it unset to use certifi",
        )
    return mode
