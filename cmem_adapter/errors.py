"""The one exception type for configuration and CA-bundle problems, and how values are shown."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@:]*):[^\s/@]*@")


class ConfigError(ValueError):
    """Raised when trust cannot be configured as asked.

    The message names the setting, where it came from, the value and the fix. It is raised
    when a policy is built, never later at request time, except for what only a request
    names: its own ``verify=`` path and its client certificate (``cert=``).
    """


def bad_value(label: str, value: str, problem: str, fix: str) -> ConfigError:
    """Returns a `ConfigError` saying "<label> to '<value>': <problem>. Fix: <fix>".

    A password in a URL in the value is masked.
    """
    return ConfigError(f"{label} to {redact(repr(value))}: {problem}. Fix: {fix}")


def redact(text: str) -> str:
    """Returns `text` with the password of every ``scheme://user:password@`` URL in it masked."""
    return _URL_PASSWORD.sub(r"\1:***@", text)
