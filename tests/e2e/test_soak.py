"""A one-minute run of the soak (tools/soak.py); the documented run is ten minutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.soak import parse, soak, summary

pytestmark = pytest.mark.serial  # it measures the server's maximum: alone on the machine


def test_one_minute_at_80_percent_of_the_maximum(tmp_path: Path) -> None:
    """A real server held by wrk at 80 % of its measured maximum for a minute (six 10 s
    windows): no error, memory and file descriptors flat, p99 steady, and the counters'
    totals exactly the 200s wrk saw to `up` (the checks of tools/soak.py)."""
    args = parse(["--minutes", "1", "--probe", "5", "--window", "10", "--quiet"])
    report = soak(args, tmp_path)
    print(f"\nsoak: {summary(report)}")
    assert not report.failures, f"{report.failures}\n{summary(report)}\n{report.samples}"
    assert len(report.samples) == 6, summary(report)
    assert report.up_200 > 0
    assert report.stored_up == report.created + report.up_200
    # the load is paced near the target, not left at the client's ceiling or idle
    assert report.requests > 0.5 * report.target_rate * 60, summary(report)
