"""The memory of `tally export` on a large workspace: peak RSS of the export process.

    .venv/bin/python -m bench.export_memory [COUNTERS] [--postgres URL]

Makes a SQLite database (or fills the PostgreSQL schema of URL) with COUNTERS counters
(default 1,000,000) of one hourly bucket each, then runs `tally export` to /dev/null and
prints its peak RSS (ru_maxrss of the child) and its time.
"""

from __future__ import annotations

import asyncio
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tally.storage import store_from_url

TALLY = Path(sys.executable).parent / "tally"


def fill_sqlite(path: Path, n: int) -> None:
    async def migrate() -> None:
        store = store_from_url(f"sqlite:///{path}", node="bench")
        await store.open()
        await store.create_workspace("big", "big")
        await store.close()

    asyncio.run(migrate())
    conn = sqlite3.connect(path)
    now = time.time()
    hour = int(now // 3600)
    with conn:
        conn.executemany(
            "INSERT INTO counters (workspace_id, name, up_count, down_count, created_at, "
            "updated_at) VALUES (1, ?, ?, 0, ?, ?)",
            ((f"c{i}", i, now, now) for i in range(1, n + 1)),
        )
        conn.execute(
            "INSERT INTO counter_hours (counter_id, hour, up, down) "
            "SELECT id, ?, up_count, 0 FROM counters",
            (hour,),
        )
    conn.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "big.db"
        started = time.monotonic()
        fill_sqlite(db, n)
        print(f"filled {n} counters in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        subprocess.run(
            [str(TALLY), "export", "--database", f"sqlite:///{db}", "-o", "/dev/null"],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        took = time.monotonic() - started
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(f"exported {n} counters in {took:.1f} s, peak RSS {peak_kb / 1024:.0f} MB")


if __name__ == "__main__":
    main()
