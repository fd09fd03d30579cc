"""What the command line prints, made safe: URL passwords masked, terminal controls escaped."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import IO

from .errors import redact
from .probe import printable

log = logging.getLogger("cmem_adapter")

DEBUG_FORMAT = "[%(asctime)s] %(message)s"


def say(*lines: str, file: IO[str] | None = None) -> None:
    """Prints `lines`, made safe: every line the command line writes goes through here.

    URL passwords are masked, and characters a terminal would act on are escaped, line by
    line, whatever the text: a message, a setting's value, an exception, a server's words.
    """
    print(*(safe(line) for line in lines), sep="\n", file=file or sys.stdout)


def safe(text: str) -> str:
    """Returns `text` with URL passwords masked and unprintable characters escaped."""
    return "\n".join(printable(redact(line)) for line in text.split("\n"))


class SafeFormatter(logging.Formatter):
    """Formats log records as `say` prints lines, for the debug lines on stderr."""

    def format(self, record: logging.LogRecord) -> str:
        return safe(super().format(record))


def error(message: object, code: int) -> int:
    """Returns `code`, having printed "error: MESSAGE" to stderr."""
    say(f"error: {message}", file=sys.stderr)
    return code


@contextlib.contextmanager
def logging_to(handler: logging.Handler) -> Iterator[None]:
    """Sends the library's log records, debug lines included, to `handler` meanwhile."""
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
