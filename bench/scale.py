"""Scale: Tally with 1,000,000 counters in its database.

- the bulk insert of the 1M counters (one transaction), timed;
- UP_1M: `up` over random counters of the 1M (bench/lua/random.lua), measured like any
  scenario (the worker's RSS sampled every 0.5 s, the totals checked);
- the flush cost and the history's size per counter-day (bench/store.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench import fixtures, store
from bench.progress import progress
from bench.scenarios import DRAIN, RANDOM_NAMES, RANDOM_PATH, Measurement, Scenario, Target

COUNTERS = 1_000_000
MAX_RSS_MB = 300.0  # the worker's, over the UP_1M load (from the performance issue)
UP_1M = Scenario(
    "up-1m",
    "up, anonymous, random of 1,000,000 public counters, commit",
    "random",
    RANDOM_PATH,
    count=COUNTERS,
    counted=RANDOM_NAMES,
    target=Target(0.5),  # issue 10
)


@dataclass(frozen=True)
class ScaleDatabase:
    path: Path
    counters: int
    insert_s: float  # the bulk insert of the counters
    db_bytes: int  # the database (and WAL) right after it


@dataclass
class ScaleResult:
    counters: int
    insert_s: float
    db_bytes: int
    load: Measurement
    flushes: list[store.FlushTiming]
    history: store.HistorySize | None  # None: not measured (--quick, --only up-1m)
    max_rss_target_mb: float = MAX_RSS_MB

    @property
    def rss_met(self) -> bool:
        return self.load.rss_max_mb <= self.max_rss_target_mb


def prepare(work: Path) -> ScaleDatabase:
    db = work / "scale.db"
    progress(f"scale: bulk-inserting {COUNTERS:,} counters")
    workspace_id = fixtures.create_workspace(db)
    fixtures.bulk_insert(db, workspace_id, [DRAIN])
    insert_s = fixtures.bulk_insert(db, workspace_id, fixtures.numbered("c", COUNTERS))
    size = sum(f.stat().st_size for f in db.parent.glob(db.name + "*"))
    progress(f"scale: {COUNTERS:,} counters inserted in {insert_s:.1f} s ({size / 1e6:.0f} MB)")
    return ScaleDatabase(db, COUNTERS, insert_s, size)


def finish(db: ScaleDatabase, load: Measurement, work: Path, *, details: bool) -> ScaleResult:
    """The in-process measurements (with `details`), after the load ran on `db`."""
    if not details:
        return ScaleResult(db.counters, db.insert_s, db.db_bytes, load, [], None)
    progress("scale: timing flushes of 1,000 and 100,000 changed counters")
    flushes = store.flush_timings(db.path, work)
    for f in flushes:
        progress(f"scale: flush of {f.changed:,} changed on {f.database}: {f.ms:.1f} ms")
    progress("scale: measuring the size of hourly history")
    history = store.history_size(work)
    progress(f"scale: {history.bytes_per_counter_day:.0f} bytes per counter per day")
    return ScaleResult(db.counters, db.insert_s, db.db_bytes, load, flushes, history)
