"""The dashboard's counters list with 10,000 counters in a workspace: time per page.

    python -m bench.site_list [--postgres URL] [--counters 10000] [--runs 20]

Builds a workspace of N counters (with counts and update times) in a fresh SQLite file,
or in a fresh schema of the given PostgreSQL database, signs an account in, and times
the list page in-process (the whole request: session, membership, the page's query and
count, the template) for the first page, a middle page, a sort by last update, a sort
by up count, and a search. Prints the median and the slowest of `runs` requests each.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

from tally.config import Settings
from tally.models import Role
from tally.web.app import create_app

PAGES = {
    "first page, by name": "/w/big",
    "page 100, by name": "/w/big?page=100",
    "by last update": "/w/big?sort=updated&dir=desc",
    "by up count": "/w/big?sort=up&dir=desc",
    "search 'c-12'": "/w/big?q=c-12",
}


async def measure(url: str, n: int, runs: int) -> dict[str, tuple[float, float]]:
    app = create_app(Settings(database_url=url, bootstrap=False, rate_limit=None))
    await app.startup()
    assert app.services is not None
    store = app.services.store
    try:
        ws = await store.create_workspace("big", "Big")
        now = time.time()
        rows = [
            (
                "INSERT INTO counters (workspace_id, name, up_count, down_count, created_at, "
                "updated_at) VALUES (%s, %s, %s, %s, %s, %s)",
                (ws.id, f"c-{i:05d}", (i * 7919) % 1000, i % 13, now, now - (i * 37) % 86400),
            )
            for i in range(n)
        ]
        await store._change(rows)  # type: ignore[attr-defined]  # bulk set-up only
        account = await store.create_account("bench@example.com", "x", now)
        await store.add_member(ws.id, account.id, Role.OWNER, now)
        session = secrets.token_urlsafe(16)
        from tally.links import secret_hash

        await store.create_session(secret_hash(session), account.id, now, now + 3600)
        out: dict[str, tuple[float, float]] = {}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://bench",
            cookies={"tally_session": session},
        ) as client:
            for label, path in PAGES.items():
                times = []
                for _ in range(runs):
                    start = time.perf_counter()
                    r = await client.get(path)
                    times.append((time.perf_counter() - start) * 1000)
                    assert r.status_code == 200, r.text[:200]
                    assert "c-" in r.text
                out[label] = (statistics.median(times), max(times))
        return out
    finally:
        await app.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--postgres", help="a PostgreSQL URL (a schema is made and dropped)")
    parser.add_argument("--counters", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
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
        print(f"  {label:<22} median {median:6.1f}   max {worst:6.1f}")


if __name__ == "__main__":
    main()
