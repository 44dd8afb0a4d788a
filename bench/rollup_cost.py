"""What the workspaces' hourly totals (workspace_hours) add to a batch's cost.

    .venv/bin/python -m bench.rollup_cost [--counters 10000] [--blocks 6] [--batches 200]
                                          [--synchronous normal] [--postgres URL]

On a noisy machine two runs minutes apart differ by more than the few percent asked
about, so this measures both in one process, interleaved: blocks of `--batches`
batches (bench.batch_cost's: 64 ups over 1 or 64 distinct counters) with the totals'
statement and without it (SQLite: the statement swapped for a no-op; PostgreSQL:
tally_add_workspace_hours replaced by an empty function), `--blocks` of each in turn.
Each line: the median of the blocks' medians, in microseconds per batch, with and
without, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg

from bench import fixtures
from bench.batch_cost import measure
from tally.storage import sqlite as sqlite_store
from tally.storage import store_from_url
from tally.storage.base import Store

NOOP_SQLITE = "SELECT ? WHERE 0"
REAL_SQLITE = sqlite_store._APPLY_WORKSPACE_HOURS
_SIGNATURE = (
    "tally_add_workspace_hours(p_ids BIGINT[], p_hours BIGINT[], p_up BIGINT[], p_down BIGINT[])"
)
NOOP_POSTGRES = f"""
CREATE OR REPLACE FUNCTION {_SIGNATURE} RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
END
$$"""


async def compare(
    label: str,
    store: Store,
    ids: list[int],
    args: argparse.Namespace,
    toggle: Callable[[bool], Awaitable[None]],
) -> None:
    for spread in (1, 64):
        runs: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.blocks):
            for on in (True, False):
                await toggle(on)
                times = await measure(store, ids, spread, 64, args.batches, False)
                runs[on].append(statistics.median(times) * 1e6)
        with_, without = statistics.median(runs[True]), statistics.median(runs[False])
        print(
            f"{label}, {spread:>2} distinct: {with_:6.0f} us with the totals, "
            f"{without:6.0f} us without: x {with_ / without:.3f}",
            flush=True,
        )


async def sqlite_run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "rollup.db"
        workspace_id = fixtures.create_workspace(db)
        fixtures.bulk_insert(db, workspace_id, fixtures.numbered("c", args.counters))
        ids = fixtures.counter_ids(db)
        store = store_from_url(f"sqlite:///{db}?synchronous={args.synchronous}", node="bench")
        await store.open()

        async def toggle(on: bool) -> None:
            sqlite_store._APPLY_WORKSPACE_HOURS = REAL_SQLITE if on else NOOP_SQLITE

        try:
            label = f"sqlite {args.counters:,} counters, synchronous={args.synchronous}"
            await compare(label, store, ids, args, toggle)
        finally:
            sqlite_store._APPLY_WORKSPACE_HOURS = REAL_SQLITE
            await store.close()


async def postgres_run(url: str, args: argparse.Namespace) -> None:
    schema = f"bench_rollup_{secrets.token_hex(6)}"
    try:
        store = store_from_url(f"{url}{'&' if '?' in url else '?'}schema={schema}", node="bench")
        await store.open()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            real = conn.execute(
                "SELECT pg_get_functiondef('tally_add_workspace_hours'::regproc)"
            ).fetchone()
            assert real is not None
            ws = await store.create_workspace("w", "w")
            conn.execute(
                "INSERT INTO counters (workspace_id, name, created_at, updated_at) "
                "SELECT %s, 'c' || i, 0, 0 FROM generate_series(0, %s - 1) AS i",
                (ws.id, args.counters),
            )
            conn.execute("ANALYZE counters")
            ids = [r[0] for r in conn.execute("SELECT id FROM counters ORDER BY id")]

            async def toggle(on: bool) -> None:
                conn.execute(real[0] if on else NOOP_POSTGRES)

            try:
                await compare(f"postgresql {args.counters:,} counters", store, ids, args, toggle)
            finally:
                await store.close()
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counters", type=int, default=10_000)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--synchronous", default="normal")
    parser.add_argument("--postgres", default=None)
    args = parser.parse_args()
    asyncio.run(sqlite_run(args))
    if args.postgres:
        asyncio.run(postgres_run(args.postgres, args))


if __name__ == "__main__":
    main()
