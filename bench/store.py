"""In-process measurements of the SQLite store, through the Store API.

- The cost of one flush (`Store.apply` of one batch: one transaction, one fsync) with
  1,000 and 100,000 changed counters, and with 1,000 changed on a small database: it
  should grow with the changed counters, not with the counters stored.
- The disk used by hourly history: bytes per counter per day of hourly buckets.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bench import fixtures
from tally.models import BatchChanges, CounterDelta
from tally.storage import Store, store_from_url

REPEATS = 3


@dataclass
class FlushTiming:
    database: str  # e.g. "1M counters"
    counters: int  # stored
    changed: int  # in the batch
    runs_ms: list[float]

    @property
    def ms(self) -> float:
        return statistics.median(self.runs_ms)

    @property
    def ms_per_changed(self) -> float:
        return self.ms / self.changed


@dataclass
class HistorySize:
    counters: int
    hours: int
    bytes_before: int
    bytes_after: int

    @property
    def bytes_per_counter_day(self) -> float:
        return (self.bytes_after - self.bytes_before) / self.counters / (self.hours / 24)

    @property
    def bytes_per_bucket(self) -> float:
        return (self.bytes_after - self.bytes_before) / (self.counters * self.hours)


def batch(seq: int, ups: dict[int, int], hour: int, updated_at: float) -> BatchChanges:
    """One batch: `ups[counter_id]` up events for each counter, all in UTC hour `hour`."""
    return BatchChanges(
        seq=seq,
        counters={cid: CounterDelta(up=n, updated_at=updated_at) for cid, n in ups.items()},
        hours={(cid, hour): [n, 0] for cid, n in ups.items()},
    )


@contextlib.asynccontextmanager
async def _opened(db: Path, node: str) -> AsyncIterator[Store]:
    store: Store = store_from_url(fixtures.sqlite_url(db), node=node)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _time_applies(db: Path, label: str, changed: list[int]) -> list[FlushTiming]:
    ids = fixtures.counter_ids(db)
    rng = random.Random(7)
    out: list[FlushTiming] = []
    async with _opened(db, "bench-flush") as store:
        seq = await store.register_node()
        for n in changed:
            timing = FlushTiming(label, len(ids), n, [])
            for _ in range(REPEATS):
                seq += 1
                now = time.time()
                changes = batch(seq, dict.fromkeys(rng.sample(ids, n), 1), int(now // 3600), now)
                started = time.perf_counter()
                await store.apply(changes)
                timing.runs_ms.append((time.perf_counter() - started) * 1000)
            out.append(timing)
    return out


def flush_timings(db_1m: Path, work: Path) -> list[FlushTiming]:
    """1,000 and 100,000 changed on a copy of the 1M-counter database; 1,000 changed on a
    fresh 10,000-counter one."""
    copy = work / "flush-1m.db"
    fixtures.backup(db_1m, copy)
    small = work / "flush-10k.db"
    fixtures.bulk_insert(small, fixtures.create_workspace(small), fixtures.numbered("c", 10_000))
    timings = asyncio.run(_time_applies(small, "10k counters", [1_000]))
    timings += asyncio.run(_time_applies(copy, "1M counters", [1_000, 100_000]))
    return timings


def _vacuumed_size(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db.stat().st_size


async def _fill_hours(db: Path, hours: int) -> None:
    ids = fixtures.counter_ids(db)
    rng = random.Random(11)
    first = int(time.time() // 86400) * 24 - hours  # the hours of the days before today
    async with _opened(db, "bench-size") as store:
        seq = await store.register_node()
        for hour in range(first, first + hours):
            seq += 1
            ups = {cid: rng.randint(1, 1000) for cid in ids}
            await store.apply(batch(seq, ups, hour, hour * 3600.0))


def history_size(work: Path, counters: int = 1_000, hours: int = 24) -> HistorySize:
    """File size growth (after VACUUM) from `hours` hourly buckets for `counters` counters."""
    db = work / "size.db"
    fixtures.bulk_insert(db, fixtures.create_workspace(db), fixtures.numbered("c", counters))
    before = _vacuumed_size(db)
    asyncio.run(_fill_hours(db, hours))
    return HistorySize(counters, hours, before, _vacuumed_size(db))
