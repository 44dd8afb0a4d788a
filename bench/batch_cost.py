"""What one group-commit batch costs the store, by how scattered its counters are.

    .venv/bin/python -m bench.batch_cost [--counters 10000,1000000] [--requests 64]
                                         [--batches 400] [--synchronous full,normal]
                                         [--postgres URL]

Issue 10 asks that a batch's cost grow with the requests in it, not with how scattered
its counters are nor with how many counters exist. This measures `Store.apply` itself,
in process, on the store's own path (the SQLite batch runs where the server runs it):
batches of REQUESTS `up`s spread over 1, 8 and REQUESTS distinct counters (consecutive
names, moving on each batch, as bench/lua/roundrobin.lua sends them), and over REQUESTS
random ones (as bench/lua/random.lua: a leaf page of their own each), on a database of
each COUNTERS size, with SQLite's `synchronous` at each value given (`normal` leaves
out the fsync per commit, to show the CPU alone). Each line: microseconds per batch
(median and p90 of BATCHES), and per request. `--postgres URL` measures a PostgreSQL
store too (a schema of its own, dropped at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from bench import fixtures
from tally.models import BatchChanges, CounterDelta
from tally.storage import store_from_url
from tally.storage.base import Store

# how a batch's counters are picked: (distinct counters, 0 for one per request; random)
SPREADS = [(1, False), (8, False), (0, False), (0, True)]
_RANDOM = random.Random(10)


def batch(
    seq: int, ids: list[int], start: int, spread: int, requests: int, scattered: bool
) -> BatchChanges:
    """`requests` ups over `spread` counters: consecutive from position `start`, or
    random ones (`scattered`)."""
    now = time.time()
    hour = int(now // 3600)
    if scattered:
        chosen = _RANDOM.sample(ids, spread)
    else:
        chosen = [ids[(start + i) % len(ids)] for i in range(spread)]
    per, extra = divmod(requests, spread)
    counters = {cid: CounterDelta(per + (i < extra), 0, False, now) for i, cid in enumerate(chosen)}
    return BatchChanges(
        seq=seq,
        counters=counters,
        hours={(cid, hour): [d.up, 0] for cid, d in counters.items()},
    )


# a batch's seq must grow for its node, or the store takes it for a retry and skips it
_SEQ = itertools.count(1)


async def measure(
    store: Store, ids: list[int], spread: int, requests: int, n: int, scattered: bool
) -> list[float]:
    """Seconds of `apply` per batch, for `n` batches after a warm-up of n / 10."""
    start = 0
    times: list[float] = []
    for i in range(n + n // 10):
        changes = batch(next(_SEQ), ids, start, spread, requests, scattered)
        start += spread
        began = time.perf_counter()
        await store.apply(changes)
        if i >= n // 10:
            times.append(time.perf_counter() - began)
    return times


def report(label: str, times: list[float], requests: int) -> None:
    times = sorted(times)
    median = statistics.median(times) * 1e6
    p90 = times[int(len(times) * 0.9)] * 1e6
    per_request = median / requests
    print(
        f"{label}: {median:7.0f} us per batch (p90 {p90:6.0f}), {per_request:5.1f} us per request"
    )


async def measure_spreads(
    store: Store, ids: list[int], label: str, args: argparse.Namespace
) -> None:
    for spread, scattered in SPREADS:
        distinct = spread or args.requests
        times = await measure(store, ids, distinct, args.requests, args.batches, scattered)
        report(
            f"{label}, {distinct:>3} {'random' if scattered else 'distinct'}", times, args.requests
        )


async def sqlite_run(size: int, synchronous: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "batch.db"
        workspace_id = fixtures.create_workspace(db)
        fixtures.bulk_insert(db, workspace_id, fixtures.numbered("c", size))
        ids = fixtures.counter_ids(db)
        store = store_from_url(f"sqlite:///{db}?synchronous={synchronous}", node="bench")
        await store.open()
        try:
            await measure_spreads(
                store, ids, f"sqlite {size:>9,} counters, synchronous={synchronous:<6}", args
            )
        finally:
            await store.close()


async def postgres_run(url: str, size: int, args: argparse.Namespace) -> None:
    import psycopg

    schema = f"bench_batch_{secrets.token_hex(6)}"  # the store makes it
    try:
        store = store_from_url(f"{url}{'&' if '?' in url else '?'}schema={schema}", node="bench")
        await store.open()
        try:
            ws = await store.create_workspace("w", "w")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'SET search_path TO "{schema}"')
                conn.execute(
                    "INSERT INTO counters (workspace_id, name, created_at, updated_at) "
                    "SELECT %s, 'c' || i, 0, 0 FROM generate_series(0, %s - 1) AS i",
                    (ws.id, size),
                )
                conn.execute("ANALYZE counters")
                ids = [r[0] for r in conn.execute("SELECT id FROM counters ORDER BY id")]
            await measure_spreads(store, ids, f"postgresql {size:>9,} counters", args)
        finally:
            await store.close()
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counters", default="10000,1000000")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--synchronous", default="full,normal")
    parser.add_argument("--postgres", default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.counters.split(",")]
    for size in sizes:
        for synchronous in args.synchronous.split(","):
            asyncio.run(sqlite_run(size, synchronous, args))
        if args.postgres:
            asyncio.run(postgres_run(args.postgres, size, args))


if __name__ == "__main__":
    main()
