"""The scenarios' databases.

The schema, the workspace and the token come from the `tally` CLI, as a user makes them.
Counters are bulk-inserted with sqlite3 straight into the `counters` table (schema:
tally/storage/migrations/sqlite/0001_initial.sql), all in one transaction: creating
100,000 or 1,000,000 of them one CLI call (one transaction) at a time would take hours.
History goes in through the Store API (`Store.apply`), as the server writes it. The
`scaleout` scenario's PostgreSQL schema gets its workspace, token and counters from the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from bench.servers import clean_env
from tally.models import BatchChanges, CounterDelta
from tally.storage import store_from_url

WORKSPACE = "default"
_CLI_TIMEOUT = 60.0


def sqlite_url(db: Path) -> str:
    return f"sqlite:///{db}"


def database_url(db: Path | str) -> str:
    """The URL of a database given as a URL, or as the Path of an SQLite file."""
    return sqlite_url(db) if isinstance(db, Path) else db


def cli(db: Path | str, *args: str) -> str:
    """Run `tally ARGS --database DB` (a URL, or the Path of an SQLite file); its stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", "tally", *args, "--database", database_url(db)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=_CLI_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"tally {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def create_workspace(db: Path | str) -> int:
    """Create the database (schema) with the workspace WORKSPACE; its id."""
    out = cli(db, "workspace", "create", WORKSPACE)
    match = re.search(r"\(id (\d+)\)", out)
    if not match:
        raise RuntimeError(f"no workspace id in: {out!r}")
    return int(match.group(1))


def create_token(db: Path | str, permission: str) -> str:
    """A new token of WORKSPACE: `token create` prints it alone on its last line."""
    out = cli(db, "token", "create", "--workspace", WORKSPACE, "--permission", permission)
    return out.strip().splitlines()[-1].strip()


def create_counter(db: Path | str, name: str) -> None:
    """A public counter `name` of WORKSPACE, made with the CLI."""
    cli(db, "counter", "create", f"{WORKSPACE}/{name}")


def bulk_insert(db: Path, workspace_id: int, names: Iterable[str]) -> float:
    """Insert public, empty counters of these names in one transaction; seconds taken."""
    now = time.time()
    rows = ((workspace_id, name, "", 0, 0, 0, now, now) for name in names)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        # the unique (workspace, name) index takes the names out of order: a page cache
        # that holds it makes the 1M insert several times faster
        conn.execute("PRAGMA cache_size = -262144")
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO counters (workspace_id, name, description, private, up_count, "
            "down_count, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def numbered(prefix: str, count: int) -> Iterable[str]:
    """prefix0, prefix1, ... prefix<count-1>: the names bench/lua/random.lua picks from."""
    return (f"{prefix}{i}" for i in range(count))


def counter_ids(db: Path, where: str = "1", params: tuple[object, ...] = ()) -> list[int]:
    with _connect(db) as conn:
        return [row[0] for row in conn.execute(f"SELECT id FROM counters WHERE {where}", params)]


def sum_up(db: Path, where: str, params: tuple[object, ...] = ()) -> int:
    """Sum of up_count over the counters matching `where` (an SQL condition)."""
    with _connect(db) as conn:
        row = conn.execute(f"SELECT SUM(up_count) FROM counters WHERE {where}", params).fetchone()
        return int(row[0] or 0)


def _connect(db: Path) -> contextlib.closing[sqlite3.Connection]:
    return contextlib.closing(sqlite3.connect(db))


def backup(src: Path, dst: Path) -> None:
    """A consistent copy of `src` (WAL included) at `dst`."""
    with _connect(src) as source, _connect(dst) as target:
        source.backup(target)


def seed_history(db: Path, name: str, days: int) -> int:
    """Give counter `name` hourly buckets over the last `days` days (a few events each
    hour, varying); the number of events."""
    return asyncio.run(_seed_history(db, name, days))


async def _seed_history(db: Path, name: str, days: int) -> int:
    store = store_from_url(sqlite_url(db), node="bench-seed")
    await store.open()
    try:
        counter = await store.read_counter(WORKSPACE, name)
        if counter is None:
            raise RuntimeError(f"no counter {name!r} to give a history")
        now = time.time()
        last = int(now // 3600)
        hours = {
            (counter.id, h): [1 + (h * 7919) % 40, (h * 104729) % 5]
            for h in range(last - days * 24 + 1, last + 1)
        }
        up = sum(ud[0] for ud in hours.values())
        down = sum(ud[1] for ud in hours.values())
        delta = CounterDelta(up=up, down=down, updated_at=now)
        seq = await store.register_node() + 1
        await store.apply(BatchChanges(seq=seq, counters={counter.id: delta}, hours=hours))
        return up + down
    finally:
        await store.close()
