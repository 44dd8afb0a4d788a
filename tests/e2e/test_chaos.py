"""A short run of the chaos harness (tools/chaos.py): real servers killed mid-load.

The long run (20 cycles of each backend, mode and signal) is in docs/durability.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import POSTGRES_URL
from services import require_redis

from tools.chaos import chaos, parse

RUNS = [
    pytest.param("sqlite", "commit", "kill", 2, id="sqlite-commit-SIGKILL"),
    pytest.param("sqlite", "buffered", "kill", 1, id="sqlite-buffered-SIGKILL"),
    pytest.param("sqlite", "commit", "term", 1, id="sqlite-commit-SIGTERM"),
    pytest.param(
        "postgresql", "commit", "kill", 2, id="pg-commit-SIGKILL", marks=pytest.mark.postgres
    ),
    pytest.param(
        "postgresql", "buffered", "term", 1, id="pg-buffered-SIGTERM", marks=pytest.mark.postgres
    ),
]


@pytest.mark.parametrize(("backend", "mode", "sig", "cycles"), RUNS)
async def test_chaos_short_run(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, mode: str, sig: str, cycles: int
) -> None:
    """Kills at random moments under load: commit mode and SIGTERM lose no acknowledged
    change, buffered mode loses only within its window, nothing is counted twice, every
    answer carries the right value, every request in flight at a SIGTERM is answered."""
    argv = ["--backend", backend, "--mode", mode, "--signal", sig, "--cycles", str(cycles)]
    argv += ["--duration", "1.2", "--workers", "6", "--quiet"]
    if backend == "postgresql":
        request.getfixturevalue("postgres_base_url")  # skipped (failed under CI) without it
        argv += ["--database", POSTGRES_URL, "--redis", require_redis()]
    args = parse(argv)
    figures, failures = await chaos(args, tmp_path)
    print(f"\n{backend} {mode} SIG{sig.upper()} x{cycles} (seed {args.seed}): {figures}")
    assert not failures, f"seed {args.seed}: {failures}\n{figures}"
    assert figures.acknowledged > 100, figures
    if mode == "commit" or sig == "term":
        assert figures.lost == 0, figures
