"""The workspace overview with a big workspace: time per page, for every period.

    python -m bench.overview [--postgres URL] [--counters 1000000] [--active 1000]
                             [--runs 5]

Builds a workspace of N counters as bench.site_list does (one INSERT ... SELECT), and
gives `--active` of them (every N / active-th) a bucket in each of the last 14 days'
hours (one more statement), so the period's sums and the counters that changed most
have buckets to read. Signs an account in and times the overview in-process (the whole
request: session, membership, the list's page and total, the workspace's bars and
previous period, the counters that changed most, the page's sparklines, the template)
for each period, by name and by up, and a counter page. Prints the median and the
slowest of `runs` requests each. Not a test: the suite has the correctness of the sums
(tests/test_periods.py) and that a page's statements do not grow with its rows
(tests/test_overview.py).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from bench.site_list import fill
from tally.config import Settings
from tally.links import secret_hash
from tally.models import Role
from tally.periods import PERIODS, parse
from tally.web.app import create_app

HOURS = 14 * 24
_SQLITE_HOURS = """
WITH RECURSIVE h(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM h WHERE k + 1 < %s)
INSERT INTO counter_hours (counter_id, hour, up, down)
SELECT c.id, %s - h.k, 1 + (c.id + h.k) %% 5, (c.id + h.k) %% 2
FROM counters c, h WHERE c.workspace_id = %s AND c.id %% %s = 0
"""
_POSTGRES_HOURS = """
INSERT INTO counter_hours (counter_id, hour, up, down)
SELECT c.id, %s - k, 1 + (c.id + k) %% 5, (c.id + k) %% 2
FROM counters c, generate_series(0, %s - 1) AS k
WHERE c.workspace_id = %s AND c.id %% %s = 0
"""


async def add_hours(store: Any, workspace_id: int, n: int, active: int) -> int:
    """Buckets for every (n / active)-th counter over the last HOURS hours (none if
    `active` is 0)."""
    if active <= 0:
        return 0
    every = max(1, n // active)
    last = int(time.time() // 3600)
    if store.dialect == "sqlite":
        await store._change(
            [(_SQLITE_HOURS.replace("%%", "%"), (HOURS, last, workspace_id, every))]
        )
    else:
        await store._change([(_POSTGRES_HOURS, (last, HOURS, workspace_id, every))])
        await store._change([("ANALYZE counter_hours", ())])
    # the workspace's hourly totals, as the writes keep them (migrations */workspace_hours)
    await store._change(
        [
            (
                "INSERT INTO workspace_hours (workspace_id, hour, up, down) "
                "SELECT c.workspace_id, h.hour, SUM(h.up), SUM(h.down) FROM counter_hours h "
                "JOIN counters c ON c.id = h.counter_id WHERE c.workspace_id = %s "
                "GROUP BY c.workspace_id, h.hour",
                (workspace_id,),
            )
        ]
    )
    rows = await store._fetch("SELECT count(*) FROM counter_hours", ())
    return int(rows[0][0])


async def measure(url: str, n: int, active: int, runs: int) -> dict[str, tuple[float, float]]:
    app = create_app(Settings(database_url=url, bootstrap=False, rate_limit=None))
    await app.startup()
    assert app.services is not None
    store = app.services.store
    try:
        ws = await store.create_workspace("big", "Big")
        started = time.perf_counter()
        await fill(store, ws.id, n)
        buckets = await add_hours(store, ws.id, n, active)
        print(
            f"  built {n:,} counters, {buckets:,} buckets in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        now = time.time()
        account = await store.create_account("bench@example.com", "x", now)
        await store.add_member(ws.id, account.id, Role.OWNER, now)
        session = secrets.token_urlsafe(16)
        await store.create_session(secret_hash(session), account.id, now, now + 3600)
        pages = {f"overview {key}": f"/w/big?period={key}" for key in PERIODS}
        pages["overview 7d by up"] = "/w/big?period=7d&sort=up&dir=desc"
        busy = await store._fetch("SELECT min(id) FROM counters", ())
        pages["counter 30d"] = f"/w/big/c/{busy[0][0]}?period=30d"
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
                    assert r.status_code == 200, (label, r.status_code)
                out[label] = (statistics.median(times), max(times))
        # the overview's reads one by one (30d): the workspace's sums, the movers
        period = parse({"period": "30d"}, time.time(), UTC)
        _, starts = period.bars()
        before = period.previous().start_hour
        page = [
            int(r[0])
            for r in await store._fetch(
                "SELECT DISTINCT counter_id FROM counter_hours ORDER BY 1 LIMIT 50", ()
            )
        ]  # a page of counters that all have buckets
        reads = {
            "30d: 50 sparklines": lambda: store.sparklines(page, starts, period.end_hour),
            "30d: workspace sums": lambda: store.period_bars(
                ws.id, starts, period.end_hour, before
            ),
            "30d: changed most": lambda: store.movers(
                ws.id, before, period.start_hour, period.end_hour, 10
            ),
        }
        for label, read in reads.items():
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                await read()
                times.append((time.perf_counter() - start) * 1000)
            out[label] = (statistics.median(times), max(times))
        return out
    finally:
        await app.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--postgres", help="a PostgreSQL URL (a schema is made and dropped)")
    parser.add_argument("--counters", type=int, default=1_000_000)
    parser.add_argument("--active", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.postgres:
        schema = f"tally_bench_{secrets.token_hex(4)}"
        sep = "&" if "?" in args.postgres else "?"
        try:
            result = asyncio.run(
                measure(
                    f"{args.postgres}{sep}schema={schema}", args.counters, args.active, args.runs
                )
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
            result = asyncio.run(measure(url, args.counters, args.active, args.runs))
        backend = "SQLite"
    print(f"{backend}, {args.counters:,} counters, {args.active:,} active, {args.runs} each (ms):")
    for label, (median, worst) in result.items():
        print(f"  {label:<22} median {median:6.1f}   max {worst:6.1f}")


if __name__ == "__main__":
    main()
