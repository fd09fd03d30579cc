"""The one exception type for configuration and CA-bundle problems, and how values are shown."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@:]*):[^\s/@]*@")


class ConfigError(ValueError):
    """Raised when trust cannot be configured as asked.

    The message names the setting, where it came from, the value and the fix. It is raised
    when a policy is built, never later at request time, except for what only a request
    names (its own ``verify=`` path, its client certificate) and, after `install`, when a
    program has written a bad value into the environment before making a session.
    """


def bad_value(label: str, value: str, problem: str, fix: str) -> ConfigError:
    """Returns a `ConfigError` saying "<label> to '<value>': <problem>. Fix: <fix>".

    A password in a URL in the value is masked.
    """
    return ConfigError(f"{label} to {redact(repr(value))}: {problem}. Fix: {fix}")


def redact(text: str) -> str:
    """Returns `text` with the password of every ``scheme://user:password@`` URL in it masked."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


def causes(error: BaseException) -> list[BaseException]:
    """Returns `error` and all it wraps: causes, contexts, urllib3's reasons and arguments."""
    found: list[BaseException] = []
    todo = [error]
    while todo:
        current = todo.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        wrapped = (current.__cause__, current.__context__, getattr(current, "reason", None))
        todo += [e for e in (*wrapped, *current.args) if isinstance(e, BaseException)]
    return found
