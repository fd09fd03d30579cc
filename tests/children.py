"""Child Python processes for the legacy drop-in tests: a controlled environment and a runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cmem_adapter

REPO = Path(cmem_adapter.__file__).resolve().parents[1]
"""The checkout under test; ``PYTHONPATH=REPO`` makes a child import this cmem_adapter."""

_DROPPED = {"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "SSL_VERIFY"}

LEGACY_SCRIPT = """\
import sys

import requests

print("status", requests.get(sys.argv[1], timeout=30).status_code)
sys.exit(int(sys.argv[2]))
"""
"""An unmodified legacy script: ``legacy.py URL EXIT_CODE``."""


def child_env(home: Path, **settings: str) -> dict[str, str]:
    """Returns this process's environment without trust, proxy, cmemc or start-up settings.

    HOME and XDG_CONFIG_HOME point into `home` (no real cmemc config.ini), warnings are
    errors, and `settings` are added last.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if name.upper() not in _DROPPED
        and not name.upper().endswith("_PROXY")
        and not name.upper().startswith(("CMEM", "OAUTH_", "PYTHON"))
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        PYTHONWARNINGS="error",
        **settings,
    )
    return env


def run(
    env: dict[str, str], *args: str | Path, python: str | Path = sys.executable
) -> subprocess.CompletedProcess[str]:
    """Runs ``python ARGS`` with `env` and returns what it did."""
    return subprocess.run(
        [str(python), *map(str, args)], env=env, capture_output=True, text=True, timeout=120
    )
