"""The one exception type for configuration and CA-bundle problems."""

from __future__ import annotations


class ConfigError(ValueError):
    """Raised when trust cannot be configured as asked.

    The message names the setting, where it came from, the value and the fix. It is raised
    when a policy is built, never later at request time, except for what only a request
    names: its own ``verify=`` path and its client certificate (``cert=``).
    """


def bad_value(label: str, value: str, problem: str, fix: str) -> ConfigError:
    """Returns a `ConfigError` saying "<label> to '<value>': <problem>. Fix: <fix>"."""
    return ConfigError(f"{label} to {value!r}: {problem}. Fix: {fix}")
