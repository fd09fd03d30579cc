"""The soak of `soak.py`, short: a few seconds, a few threads, a few swaps."""

from __future__ import annotations

from pathlib import Path

import pytest
from soak import run


@pytest.mark.parametrize("how", ["k8s", "rename"])
def test_rotating_bundle_under_load_never_accepts_or_refuses_wrongly(
    how: str, tmp_path: Path
) -> None:
    report = run(seconds=6, threads=4, interval=2, how=how, directory=tmp_path)
    summary = report.summary()
    assert report.failures == [], summary
    assert report.swaps >= 2, summary
    # Each judgement was made for each server, so a wrong outcome would have been seen:
    # B trusted and A refused after a swap, and the reverse.
    must_accept, must_refuse = report.counts["must accept"], report.counts["must refuse"]
    assert must_accept["A accepted"] > 0 and must_accept["B accepted"] > 0, summary
    assert min(must_refuse[f"{server} refused"] for server in "ABC") > 0, summary
    assert report.error_logs == [], summary
