"""The dashboard's counters list with a big workspace: time per page, every sort, the
first page and a deep one.

    python -m bench.site_list [--postgres URL] [--counters 1000000] [--runs 10]

Builds a workspace of N counters (with counts and update times) in a fresh SQLite file,
or in a fresh schema of the given PostgreSQL database, with one INSERT ... SELECT over a
generated series (a million rows in seconds), signs an account in, and times the list
page in-process (the whole request: session, membership, the page's query and count,
the template): for each sort and direction the first page and the page after the
counter 90 % of the way down (its cursor, as the list's Next link gives it), and a
search. Prints the median and the slowest of `runs` requests each. Not a test: the
suite has the correctness of paging (tests/test_paging.py).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
from psycopg import sql

from tally.config import Settings
from tally.models import Role
from tally.storage import paging
from tally.storage.base import Store
from tally.storage.rows import COUNTER_COLUMNS, to_counter
from tally.web.app import create_app

SORTS = [("name", "asc"), ("updated", "desc"), ("up", "desc"), ("down", "desc"), ("up", "asc")]
# one match, about 110 (sorted from the index's matches), 100,000 (the list's index,
# filtered), none; a short one is refused past 100,000 counters
SEARCHES = ["c-0012345", "00123", "c-00", "zzz"]

# counter i is named c-{i:07d}, up (i * 7919) % 1000, down i % 13,
# updated within the last day
# (SQLite's runner turns only %s into ?, psycopg also reads %% as %)
_SQLITE_FILL = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < %s)
INSERT INTO counters (workspace_id, name, up_count, down_count, created_at, updated_at)
SELECT %s, printf('c-%07d', i), (i * 7919) % 1000, i % 13, %s, %s - (i * 37) % 86400
FROM n
"""
_POSTGRES_FILL = """
INSERT INTO counters (workspace_id, name, up_count, down_count, created_at, updated_at)
SELECT %s, 'c-' || lpad(i::text, 7, '0'), (i * 7919) %% 1000, i %% 13, %s,
    %s - (i * 37) %% 86400
FROM generate_series(0::bigint, %s - 1) AS i
"""


async def fill(store: Store, workspace_id: int, n: int) -> None:
    """N counters in one statement (bulk set-up only: the store's own SQL runner)."""
    now = time.time()
    run: Any = store._change  # type: ignore[attr-defined]
    if store.dialect == "sqlite":
        await run([(_SQLITE_FILL, (n, workspace_id, now, now))])
    else:
        await run([(_POSTGRES_FILL, (workspace_id, now, now, n))])
        # as autovacuum would soon: the trigram index's pending entries merged (a
        # search reads them one by one), the planner's statistics taken
        await run(
            [
                ("SELECT gin_clean_pending_list('counter_names_trgm'::regclass)", ()),
                ("ANALYZE counters", ()),
                ("ANALYZE counter_names", ()),
            ]
        )


async def deep_cursor(store: Store, workspace_id: int, sort: str, desc: bool, n: int) -> str:
    """The cursor of the counter 90 % of the way down the list in this order."""
    fetch: Any = store._fetch  # type: ignore[attr-defined]
    collate = ' COLLATE "C"' if store.dialect == "postgresql" else ""
    rows = await fetch(
        f"SELECT {COUNTER_COLUMNS} FROM counters c JOIN workspaces w ON w.id = c.workspace_id "
        f"WHERE c.workspace_id = %s ORDER BY {paging.order(sort, collate, desc)} "
        "LIMIT 1 OFFSET %s",
        (workspace_id, n * 9 // 10),
    )
    return paging.encode(paging.key_of(to_counter(rows[0]), sort))


async def measure(url: str, n: int, runs: int) -> dict[str, tuple[float, float]]:
    app = create_app(Settings(database_url=url, bootstrap=False, rate_limit=None))
    await app.startup()
    assert app.services is not None
    store = app.services.store
    try:
        ws = await store.create_workspace("big", "Big")
        started = time.perf_counter()
        await fill(store, ws.id, n)
        print(f"  built {n:,} counters in {time.perf_counter() - started:.1f} s", flush=True)
        now = time.time()
        account = await store.create_account("bench@example.com", "x", now)
        await store.add_member(ws.id, account.id, Role.OWNER, now)
        session = secrets.token_urlsafe(16)
        from tally.links import secret_hash

        await store.create_session(secret_hash(session), account.id, now, now + 3600)
        pages: dict[str, str] = {}
        for sort, direction in SORTS:
            here = {"sort": sort, "dir": direction}
            pages[f"{sort} {direction}, first"] = "/w/big?" + urlencode(here)
            cursor = await deep_cursor(store, ws.id, sort, direction == "desc", n)
            pages[f"{sort} {direction}, 90 %"] = "/w/big?" + urlencode({**here, "after": cursor})
        for q in SEARCHES:
            pages[f"search {q!r}"] = "/w/big?" + urlencode({"q": q})
        out: dict[str, tuple[float, float]] = {}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://bench",
            cookies={"tally_session": session},
        ) as client:
            for label, path in pages.items():
                times = []
                for _ in range(runs):
                    start = time.perf_counter()
                    r = await client.get(path)
                    times.append((time.perf_counter() - start) * 1000)
                    assert r.status_code == 200, r.text[:200]
                    assert "zzz" in path or "c-0" in r.text
                out[label] = (statistics.median(times), max(times))
        return out
    finally:
        await app.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--postgres", help="a PostgreSQL URL (a schema is made and dropped)")
    parser.add_argument("--counters", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if args.postgres:
        schema = f"tally_bench_{secrets.token_hex(4)}"
        sep = "&" if "?" in args.postgres else "?"
        try:
            result = asyncio.run(
                measure(f"{args.postgres}{sep}schema={schema}", args.counters, args.runs)
            )
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
        backend = "PostgreSQL"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'big.db'}"
            result = asyncio.run(measure(url, args.counters, args.runs))
        backend = "SQLite"
    print(f"{backend}, {args.counters:,} counters, {args.runs} requests each (ms):")
    for label, (median, worst) in result.items():
        print(f"  {label:<24} median {median:6.1f}   max {worst:6.1f}")


if __name__ == "__main__":
    main()
