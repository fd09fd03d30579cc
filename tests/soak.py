"""Soak: many threads through one session while the CA bundle rotates between two CAs.

    python tests/soak.py --seconds 60 --threads 16 [--interval 3] [--how k8s|rename]

Three loopback servers: A (signed by CA A), B (CA B) and C (CA C, never in the bundle). A
writer thread replaces the bundle file every `interval` seconds (A, then B, A, B, ...), by a
Kubernetes symlink swap or an atomic rename. The worker threads share one `requests.Session`
with one `TrustAdapter(TrustPolicy.bundle(file))` and each sends request after request to a
random server. Accepted requests mostly reuse pooled connections; every refused one, and the
first to each server after a reload (new context, new pool), is a new TLS handshake.

What counts as a failure. Let W = PROMISED + GRACE: a replaced file is trusted by new
connections within PROMISED, about a second (DESIGN §5, rule 9), and GRACE covers thread
scheduling. For a request to server X that started
at t0 and ended at t1, HELD is the set of CAs the file held at any moment of [t0 - W, t1]
(while a swap is being written, both its old and its new CA count as held). Then:

- HELD is X's CA alone: the request must be accepted. A refusal is a failure ("refused,
  should be accepted").
- X's CA is not in HELD (always so for C): the request must be refused. Accepting it is a
  failure ("accepted, should be refused").
- HELD holds X's CA and the other one (a swap less than W ago): accepted and refused are both
  right. The old CA may still be trusted for up to W after a swap; no CA is ever accepted
  that the file did not hold within W.
- Any outcome other than an accept or a CERTIFICATE_VERIFY_FAILED refusal (a timeout, a
  reset, a 5xx) is a failure, whatever HELD is.

Exits 0 when no request failed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import requests
import trustme
from cafiles import publish
from servers import HTTPSServer

PROMISED = 1.0
"""Seconds within which new connections trust a replaced file (DESIGN §5, rule 9)."""
GRACE = 0.5
"""Seconds added to PROMISED for the propagation window W (see the module docstring)."""

NAMES = ("A", "B", "C")


class Swap(NamedTuple):
    began: float
    done: float
    ca: str


class Outcome(NamedTuple):
    server: str
    started: float
    ended: float
    result: str
    """"accepted", "refused" (certificate verification), or "error"."""
    detail: str


class Timeline:
    """Which CA the bundle file held when: the first one, then one entry per swap."""

    def __init__(self, first: str) -> None:
        self.first = first
        self.swaps: list[Swap] = []

    def held(self, start: float, end: float) -> set[str]:
        """Returns the CAs the file held at some moment between `start` and `end`."""
        periods = [(float("-inf"), self.first)] + [(s.began, s.ca) for s in self.swaps]
        ends = [s.done for s in self.swaps] + [float("inf")]
        spans = zip(periods, ends, strict=True)
        return {ca for (began, ca), until in spans if began <= end and until >= start}


@dataclass
class Report:
    seconds: float
    swaps: int
    window: float
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    """For each expectation ("must accept", "must refuse", "either"), the number of outcomes
    by server and result, e.g. ``{"must accept": {"B accepted": 812, ...}, ...}``."""
    failures: list[str] = field(default_factory=list)
    error_logs: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    def summary(self) -> str:
        lines = [
            f"{self.requests} requests in {self.seconds:.1f} s, {self.swaps} swaps,"
            f" window W = {self.window:.2f} s"
        ]
        for expectation in ("must accept", "must refuse", "either"):
            counted = self.counts.get(expectation, Counter())
            lines.append(f"  {expectation:12} {dict(sorted(counted.items()))}")
        lines.append(f"  errors logged by cmem_adapter: {len(self.error_logs)}")
        lines.append(f"  failures: {len(self.failures)}")
        lines += [f"    {failure}" for failure in self.failures[:20]]
        return "\n".join(lines)


def judge(outcome: Outcome, timeline: Timeline, window: float) -> tuple[str, str | None]:
    """Returns the request's expectation and, if it failed, why (see the module docstring)."""
    held = timeline.held(outcome.started - window, outcome.ended)
    if held == {outcome.server}:
        expectation = "must accept"
    elif outcome.server not in held:
        expectation = "must refuse"
    else:
        expectation = "either"
    failure = None
    if outcome.result == "error":
        failure = "error"
    elif expectation == "must accept" and outcome.result != "accepted":
        failure = "refused, should be accepted"
    elif expectation == "must refuse" and outcome.result != "refused":
        failure = "accepted, should be refused"
    if failure is None:
        return expectation, None
    return expectation, (
        f"{failure}: server {outcome.server} at {outcome.started:.3f}-{outcome.ended:.3f},"
        f" file held {sorted(held)} {outcome.detail}"
    )


def attempt(session: requests.Session, server: HTTPSServer) -> tuple[str, str]:
    try:
        response = session.get(server.url, timeout=10)
    except requests.exceptions.SSLError as e:
        if "CERTIFICATE_VERIFY_FAILED" in str(e):
            return "refused", ""
        return "error", repr(e)
    except requests.RequestException as e:
        return "error", repr(e)
    if response.status_code != 200 or response.json().get("server") != server.name:
        return "error", f"HTTP {response.status_code} {response.text[:100]!r}"
    return "accepted", ""


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _issue(ca: trustme.CA, directory: Path, name: str) -> tuple[str, str]:
    cert = ca.issue_cert("127.0.0.1")
    chain, key = directory / f"{name}.pem", directory / f"{name}.key"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    return str(chain), str(key)


def run(seconds: float, threads: int, interval: float, how: str, directory: Path) -> Report:
    """Runs the soak for `seconds` and returns what happened."""
    # Imported here so that main() can first put this checkout on sys.path.
    from cmem_adapter import TrustAdapter, TrustPolicy

    cas = {name: trustme.CA() for name in NAMES}
    pems = {name: ca.cert_pem.bytes() for name, ca in cas.items()}
    mounted = directory / "mounted"
    publish(how, mounted, pems["A"])
    timeline = Timeline("A")
    outcomes: list[Outcome] = []
    stop = threading.Event()
    errors = _Collect()
    logger = logging.getLogger("cmem_adapter")

    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(HTTPSServer(*_issue(ca, directory, name), name=name))
            for name, ca in cas.items()
        }
        session = stack.enter_context(requests.Session())
        session.trust_env = False  # no proxy or CA variables of this machine
        policy = TrustPolicy.bundle(mounted / "ca.pem")
        session.mount("https://", TrustAdapter(policy, pool_maxsize=threads))
        logger.addHandler(errors)
        stack.callback(logger.removeHandler, errors)

        def rotate() -> None:
            for name in itertools.cycle("BA"):
                if stop.wait(interval):
                    return
                began = time.monotonic()
                publish(how, mounted, pems[name])
                timeline.swaps.append(Swap(began, time.monotonic(), name))

        def work(seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                name = rng.choices(NAMES, weights=(9, 9, 2))[0]
                started = time.monotonic()
                result, detail = attempt(session, servers[name])
                outcomes.append(Outcome(name, started, time.monotonic(), result, detail))

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        workers.append(threading.Thread(target=rotate))
        started = time.monotonic()
        for worker in workers:
            worker.start()
        stop.wait(seconds)
        stop.set()
        for worker in workers:
            worker.join()
        elapsed = time.monotonic() - started

    window = PROMISED + GRACE
    report = Report(elapsed, len(timeline.swaps), window, error_logs=errors.messages)
    for outcome in outcomes:
        expectation, failure = judge(outcome, timeline, window)
        report.counts.setdefault(expectation, Counter())[f"{outcome.server} {outcome.result}"] += 1
        if failure is not None:
            report.failures.append(failure)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--interval", type=float, default=3, help="seconds between swaps")
    parser.add_argument("--how", choices=("k8s", "rename"), default="k8s")
    args = parser.parse_args(argv)
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
    with tempfile.TemporaryDirectory() as directory:
        report = run(args.seconds, args.threads, args.interval, args.how, Path(directory))
    print(report.summary())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
