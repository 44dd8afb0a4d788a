"""What an answer promises when the database misbehaves: a 503 counted nothing, a 200
counted exactly once, and buffered answers carry the request's own value."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import psycopg
import pytest
from services import TcpProxy

from tally.counters import Counters
from tally.errors import StorageError, Unavailable
from tally.models import Counter
from tally.storage import Store
from tally.storage.postgres import PostgresStore
from tally.writes import GroupCommit


async def _counts(store: Store, counter: Counter) -> tuple[int, int]:
    counts = await store.read_counts(counter.id)
    assert counts is not None
    return counts[0], counts[1]


@pytest.mark.postgres
async def test_a_commit_stuck_on_a_lock_is_a_503_that_never_counts(postgres_url: str) -> None:
    """Commit mode: a group commit waiting on a row lock past the client's timeout. The
    server gives up first (lock_timeout below the call timeout), so the 503 is true:
    once the lock is released nothing is counted (before the fix the abandoned calls
    committed later: 503s that counted)."""
    store = PostgresStore.from_url(postgres_url, node="n", call_timeout=2.0)
    await store.open()
    writes = GroupCommit(store)
    writes.start(await store.register_node())
    try:
        ws = await store.create_workspace("ws", "ws")
        counter = await store.create_counter(ws.id, "c")
        plain_url = postgres_url.split("?")[0]
        search_path = f"-c search_path={store.schema}"
        with psycopg.connect(plain_url, options=search_path) as locker:
            locker.execute("SELECT 1 FROM counters WHERE id = %s FOR UPDATE", (counter.id,))
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await writes.wait(writes.add(counter.id, 1, 0, time.time()))
            assert time.monotonic() - started < 8
            await asyncio.sleep(2.5)  # a call the client gave up on would still be waiting
            locker.rollback()
        await asyncio.sleep(1.0)
        assert await _counts(store, counter) == (0, 0)
        assert (await writes.wait(writes.add(counter.id, 1, 0, time.time()))).up_count == 1
    finally:
        await writes.stop()
        await store.close()


@pytest.fixture
async def proxied(postgres_url: str) -> AsyncIterator[tuple[PostgresStore, TcpProxy]]:
    """A PostgreSQL store reached through a TCP proxy the test can cut."""
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = postgres_url.replace(target.netloc, f"{target.username}@127.0.0.1:{proxy.port}")
    store = PostgresStore.from_url(url, node="n", call_timeout=1.0)
    await store.open()
    try:
        yield store, proxy
    finally:
        await store.close()
        await proxy.cut()


@pytest.mark.postgres
async def test_buffered_a_failed_read_counts_nothing(
    proxied: tuple[PostgresStore, TcpProxy],
) -> None:
    """Buffered: an up whose fresh read fails is answered with an error and its change is
    never made (before the fix it was added first, then flushed later: a 503 that
    counted)."""
    store, proxy = proxied
    writes = GroupCommit(store, durability="buffered", flush_interval=0.05, retry_delay=0.05)
    writes.start(await store.register_node())
    counters = Counters(store, writes, cache_ttl=3600)
    try:
        ws = await store.create_workspace("ws", "ws")
        counter = await store.create_counter(ws.id, "c")
        assert (await counters.count("ws", "c", None, 1, 0)).up_count == 1
        await writes.flush()
        await proxy.cut()
        with pytest.raises(StorageError):
            await counters.count("ws", "c", None, 1, 0)
        await proxy.start()
        await writes.flush()
        await asyncio.sleep(0.3)
        assert await _counts(store, counter) == (1, 0)
        assert (await counters.count("ws", "c", None, 1, 0)).up_count == 2
    finally:
        await writes.stop()


@pytest.mark.postgres
async def test_buffered_concurrent_ups_get_their_own_values(postgres_url: str) -> None:
    """Buffered on PostgreSQL: 64 concurrent ups are answered 1..64, each its own value
    (before the fix all 64 were answered 64)."""
    store = PostgresStore.from_url(postgres_url, node="n")
    await store.open()
    writes = GroupCommit(store, durability="buffered", flush_interval=3600)
    writes.start(await store.register_node())
    counters = Counters(store, writes)
    try:
        ws = await store.create_workspace("ws", "ws")
        await store.create_counter(ws.id, "c")
        views = await asyncio.gather(*(counters.count("ws", "c", None, 1, 0) for _ in range(64)))
        assert sorted(v.up_count for v in views) == list(range(1, 65))
    finally:
        await writes.stop()
        await store.close()


async def test_a_late_batch_into_settled_hours_shows_in_stats_at_once(store: Store) -> None:
    """Stats cache the sums of settled hours (before this week); a batch committed into
    those hours (late: say buffered through an outage) shows in the next stats (before
    the fix it stayed hidden for up to a week)."""
    writes = GroupCommit(store)
    writes.start(await store.register_node())
    counters = Counters(store, writes)
    try:
        ws = await store.create_workspace("ws", "ws")
        counter = await store.create_counter(ws.id, "c")
        await writes.wait(writes.add(counter.id, 1, 0, time.time() - 30 * 86400))
        _, before = await counters.stats("ws", "c", None)
        assert sum(p["up"] for p in before["temporal"]["weekdays"].values()) == 1
        await writes.wait(writes.add(counter.id, 5, 0, time.time() - 20 * 86400))
        _, after = await counters.stats("ws", "c", None)
        assert sum(p["up"] for p in after["temporal"]["weekdays"].values()) == 6
    finally:
        await writes.stop()
