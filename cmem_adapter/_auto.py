"""Start-up hook: with CMEM_ADAPTER_AUTO=1, every Python process runs `install()`.

Imported by ``cmem_adapter_auto.pth`` only when the variable is set. A broken configuration
prints one line to stderr and the process goes on without the adapter: a typo in a container's
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
        print(
            f"cmem-adapter: CMEM_ADAPTER_AUTO={value!r} is not 1 or 0; TLS trust left to requests",
            file=sys.stderr,
        )
        return
    try:
        from cmem_adapter import install

        install()
    except Exception as e:  # anything: a start-up hook must never stop the interpreter
        print(f"cmem-adapter: not installed, TLS trust left to requests: {e}", file=sys.stderr)


_apply()
