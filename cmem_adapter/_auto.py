"""Start-up hook: with CMEM_ADAPTER_AUTO=1, every Python process runs `install()`.

Imported by ``cmem_adapter_auto.pth``, which reads the variable itself so that an unset or
off value (``0``, ``false``, ``no``, ``off``) imports nothing. `install()` takes the policy
from the environment over cmemc's config.ini, if there is one. A broken configuration prints
one line to stderr and the process goes on without the adapter: a typo in a container's
environment must not stop every Python program in it.
"""

from __future__ import annotations

import os
import sys


def _apply() -> None:
    value = os.environ.get("CMEM_ADAPTER_AUTO", "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return
    if value not in ("1", "true", "yes", "on"):
        _say(f"CMEM_ADAPTER_AUTO={value!r} is not 1 or 0")
        return
    try:
        from cmem_adapter import install

        install()
    except Exception as e:  # anything: a start-up hook must never stop the interpreter
        _say(" ".join(str(e).split()) or type(e).__name__)


def _say(problem: str) -> None:
    print(f"cmem-adapter: not installed, TLS trust left to requests: {problem}", file=sys.stderr)


_apply()
