"""A one-minute run of the soak (tools/soak.py); the documented run is ten minutes."""

from __future__ import annotations

from pathlib import Path

from tools.soak import parse, soak, summary


async def test_one_minute_at_80_percent_of_the_maximum(tmp_path: Path) -> None:
    """A real server held at 80 % of its measured maximum for a minute: no error, memory
    and file descriptors flat, p99 steady (the checks of tools/soak.py)."""
    args = parse(["--minutes", "1", "--probe", "5", "--sample", "5", "--quiet"])
    report = await soak(args, tmp_path)
    print(f"\nsoak: {summary(report)}")
    assert not report.failures, f"{report.failures}\n{summary(report)}\n{report.samples}"
    assert report.requests > 0.5 * report.target_rate * 60, summary(report)
