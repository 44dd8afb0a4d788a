"""Batches committed on the event loop's thread (SQLiteStore, InlineCommits): only while
that needs no waiting and commits stay quick, else on the writer thread, with the same
result either way."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tally.models import BatchChanges, CounterDelta
from tally.storage.sqlite import InlineCommits, SQLiteStore


def batch(seq: int, counter_id: int, up: int = 1) -> BatchChanges:
    return BatchChanges(
        seq=seq,
        counters={counter_id: CounterDelta(up, 0, False, 1.0)},
        hours={(counter_id, 400_000): [up, 0]},
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "tally.db", node="n")
    s.inline.limit = 60.0  # a loaded test machine's slow commits must not decide here
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@contextlib.contextmanager
def ticking() -> Iterator[list[int]]:
    """Count the event loop's 10 ms ticks while the block runs: [ticks]. A loop blocked
    by the block ticks about never."""
    ticks = [0]

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.01)
            ticks[0] += 1

    ticker = asyncio.get_running_loop().create_task(tick())
    try:
        yield ticks
    finally:
        ticker.cancel()


async def up_count(store: SQLiteStore, cid: int) -> int:
    counts = await store.read_counts(cid)
    assert counts is not None
    return counts[0]


async def counter_id(store: SQLiteStore) -> int:
    ws = await store.create_workspace("ws", "ws")
    return (await store.create_counter(ws.id, "c")).id


def test_quick_commits_stay_inline_slow_ones_go_to_the_thread_and_are_probed() -> None:
    policy = InlineCommits(limit=0.001, max_rows=10, probe_every=1.0)
    assert policy.wanted(10, 0.0)
    assert not policy.wanted(11, 0.0)  # too big to hold the loop for
    for _ in range(50):
        policy.took(0.0002, 0.0)
    assert policy.wanted(1, 0.0)
    policy.took(0.004, 100.0)  # one slow commit among quick ones: the average holds
    assert policy.wanted(1, 100.0)
    for _ in range(10):
        policy.took(0.004, 100.0)  # the disk became slow
    assert not policy.wanted(1, 100.0)
    assert not policy.wanted(1, 100.9)
    assert policy.wanted(1, 101.0)  # a probe, a second later
    policy.took(0.003, 101.0)  # still slow: back to the thread for another second
    assert not policy.wanted(1, 101.5)
    assert policy.wanted(1, 102.0)
    policy.took(0.0002, 102.0)  # recovered: one quick probe is enough to return
    assert policy.wanted(1, 102.1)


async def test_a_quick_batch_commits_inline(store: SQLiteStore) -> None:
    cid = await counter_id(store)
    totals = await store.apply(batch(1, cid, 3))
    assert (totals[cid].up_count, store.inline.inline, store.inline.threaded) == (3, 1, 0)
    assert await up_count(store, cid) == 3


async def test_a_big_batch_goes_to_the_thread(store: SQLiteStore) -> None:
    cid = await counter_id(store)
    store.inline.max_rows = 1  # a counter and its hour are two rows
    totals = await store.apply(batch(1, cid))
    assert (totals[cid].up_count, store.inline.inline, store.inline.threaded) == (1, 0, 1)


async def test_a_batch_never_waits_on_the_loop_for_the_writer_thread(store: SQLiteStore) -> None:
    """While the writer thread holds the connection (a long write), a batch queues
    behind it on the thread: the loop goes on meanwhile."""
    cid = await counter_id(store)
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow(conn: sqlite3.Connection | None) -> None:
        loop.call_soon_threadsafe(started.set)
        time.sleep(0.3)

    long_write = asyncio.create_task(store._write(slow))
    await started.wait()
    with ticking() as ticks:
        totals = await store.apply(batch(1, cid))
    await long_write
    assert totals[cid].up_count == 1
    assert (store.inline.inline, store.inline.threaded) == (0, 1)
    assert ticks[0] >= 5  # the loop ran while the batch waited for the thread


async def test_another_process_holding_the_lock_sends_the_batch_to_the_thread(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """Another process's write transaction: the inline attempt gives up at once (no
    busy wait on the loop's thread) and the writer thread waits for the lock instead;
    the batch counts once, after the lock is released."""
    cid = await counter_id(store)
    other = sqlite3.connect(tmp_path / "tally.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, other.execute, "COMMIT")
    started = time.monotonic()
    try:
        with ticking() as ticks:
            totals = await store.apply(batch(1, cid, 2))
    finally:
        other.close()
    assert time.monotonic() - started >= 0.25  # it did wait for the lock...
    assert ticks[0] >= 5  # ...on the thread, not on the loop
    assert totals[cid].up_count == 2
    assert await up_count(store, cid) == 2
    assert (store.inline.inline, store.inline.threaded) == (0, 1)
    # the busy timeout is back for the thread's writes
    assert store._writer_conn is not None
    assert store._writer_conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    await store.apply(batch(2, cid))
    assert store.inline.inline == 1


async def test_inline_and_thread_commits_add_up_in_order(store: SQLiteStore) -> None:
    """Batches alternate between the loop's thread and the writer thread (the policy
    forced both ways): every one counts once, and the node's seq is the last one."""
    cid = await counter_id(store)
    for seq in range(1, 41):
        store.inline.max_rows = 512 if seq % 3 else 0
        await store.apply(batch(seq, cid))
    assert await up_count(store, cid) == 40
    assert store.inline.inline + store.inline.threaded == 40
    assert store.inline.threaded == 13
    assert (await store.apply(batch(40, cid)))[cid].up_count == 40  # a retry: idempotent
