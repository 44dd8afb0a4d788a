"""The node's knowledge of counter settings (tally.counters.CounterCache): exact for
changes made through this node (seen by the next lookup however long the TTL); another
process's or node's change is seen once this node writes next (SQLite) or commits its
next batch (PostgreSQL), or within the TTL when it does not; bounded by memory."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import psycopg
import pytest
from conftest import Harness, HarnessFactory
from helpers import assert_error
from psycopg import sql
from test_management import COUNTERS, call

from tally.counters import CounterCache
from tally.models import BatchChanges, Counter, CounterChange, CounterDelta, Permission
from tally.storage import Store, store_from_url
from tally.storage.postgres import PostgresStore
from tally.storage.sqlite import SQLiteStore

LONG = 3600.0  # a TTL no test waits out


def only(h: Harness, dialect: str) -> None:
    if h.store.dialect != dialect:
        pytest.skip(f"{dialect} only")


def _counter(n: int) -> Counter:
    return Counter(n, 1, "ws", f"c{n}", "", False, 0, 0, 0.0, 0.0)


async def other_node(h: Harness) -> Store:
    """A second node's store on the harness's PostgreSQL schema."""
    store = store_from_url(h.app.settings.database_url, node="other-node")
    await store.open()
    return store


async def test_settings_changes_are_seen_at_once(make_harness: HarnessFactory) -> None:
    """With a TTL of an hour, each change of a cached counter's settings made through
    the store of this node (bounds, visibility, deletion, its workspace's origins) holds
    for the very next request."""
    h = await make_harness(token_cache_ttl=LONG)
    ws = await h.workspace()
    c = await h.counter(ws, "c")
    writer = await h.token(ws, Permission.WRITE)
    assert (await h.get("/v2/ws/c/up?by=5", writer)).status_code == 200
    assert (await h.get("/v2/ws/c")).status_code == 200  # cached, public
    await h.store.change_counter(c.id, CounterChange(bounds=(None, 5), origins=()))
    assert_error(await h.get("/v2/ws/c/up", writer), 409)
    await h.store.change_counter(c.id, CounterChange(bounds=(None, None), origins=()))
    assert (await h.get("/v2/ws/c/up", writer)).json()["data"]["up_count"] == 6
    await h.store.change_counter(c.id, CounterChange(private=True))  # private
    assert_error(await h.get("/v2/ws/c"), 404)
    assert (await h.get("/v2/ws/c", writer)).json()["data"]["private"] is True
    await h.store.change_counter(c.id, CounterChange(private=False))
    await h.store.set_workspace_rules(ws.id, v1_open=False, origins=("https://a.example",))
    assert_error(await h.get("/v2/ws/c/up"), 403)  # anonymous, from no allowed origin
    assert await h.store.delete_counter(c.id)
    assert_error(await h.get("/v2/ws/c"), 404)


async def test_a_settings_save_of_the_api_is_seen_at_once(make_harness: HarnessFactory) -> None:
    """With a TTL of an hour, a PATCH of a counter (one store call) holds for this node's
    very next request on both backends (the API forgets the name); a refused one (409)
    leaves the settings in force."""
    h = await make_harness(token_cache_ttl=LONG)
    ws = await h.workspace()
    c = await h.counter(ws, "c")
    admin = await h.token(ws, Permission.ADMIN)
    path = f"{COUNTERS}/{c.id}"
    assert (await h.get("/v2/ws/c/up?by=5", admin)).status_code == 200
    assert (await h.get("/v2/ws/c")).status_code == 200  # cached, public
    r = await call(h, "PATCH", path, admin, {"ceiling": 5, "visibility": "private"})
    assert r.status_code == 200, r.text
    assert_error(await h.get("/v2/ws/c"), 404)
    assert_error(await h.get("/v2/ws/c/up", admin), 409)
    assert_error(await call(h, "PATCH", path, admin, {"ceiling": 4, "visibility": "public"}), 409)
    assert_error(await h.get("/v2/ws/c"), 404)
    r = await call(h, "PATCH", path, admin, {"ceiling": None, "visibility": "public"})
    assert r.status_code == 200, r.text
    assert (await h.get("/v2/ws/c/up")).json()["data"]["up_count"] == 6


async def test_sqlite_another_process_change_is_seen_by_the_next_write(
    make_harness: HarnessFactory,
) -> None:
    """A change committed by another process (the sqlite3 shell, the CLI) is seen once
    this node writes next (its writer looks with every write), and within the TTL when
    it does not write."""
    h = await make_harness(token_cache_ttl=LONG)
    only(h, "sqlite")
    ws = await h.workspace()
    await h.counter(ws, "a")
    await h.counter(ws, "b")
    writer = await h.token(ws, Permission.WRITE)
    assert (await h.get("/v2/ws/a")).status_code == 200  # cached, public
    store = h.store
    assert isinstance(store, SQLiteStore)
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("UPDATE counters SET private = 1 WHERE name = 'a'")
    finally:
        other.close()
    assert (await h.get("/v2/ws/b/up", writer)).status_code == 200  # a write of this node
    assert_error(await h.get("/v2/ws/a"), 404)


async def test_sqlite_idle_node_falls_back_to_the_ttl(make_harness: HarnessFactory) -> None:
    """Without writes of this node, another process's change shows within the TTL."""
    h = await make_harness(token_cache_ttl=0.2)
    only(h, "sqlite")
    ws = await h.workspace()
    await h.counter(ws, "a")
    assert (await h.get("/v2/ws/a")).status_code == 200
    store = h.store
    assert isinstance(store, SQLiteStore)
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("UPDATE counters SET private = 1 WHERE name = 'a'")
    finally:
        other.close()
    await asyncio.sleep(0.3)
    assert_error(await h.get("/v2/ws/a"), 404)


async def test_postgres_another_node_change_is_seen_by_the_next_commit(
    make_harness: HarnessFactory,
) -> None:
    """A change committed by another node is seen once this node's next group commit
    read the database's settings epoch, however long the TTL."""
    h = await make_harness(token_cache_ttl=LONG)
    only(h, "postgresql")
    ws = await h.workspace()
    a = await h.counter(ws, "a")
    await h.counter(ws, "b")
    writer = await h.token(ws, Permission.WRITE)
    assert (await h.get("/v2/ws/b/up", writer)).status_code == 200
    assert (await h.get("/v2/ws/a")).status_code == 200  # cached, public
    other = await other_node(h)
    try:
        await other.change_counter(a.id, CounterChange(private=True))
    finally:
        await other.close()
    assert (await h.get("/v2/ws/a")).status_code == 200  # no commit of this node since
    assert (await h.get("/v2/ws/b/up", writer)).status_code == 200
    assert_error(await h.get("/v2/ws/a"), 404)


async def test_postgres_another_nodes_unique_by_is_seen_by_the_next_commit(
    make_harness: HarnessFactory,
) -> None:
    """unique_by (a column added later) moves the settings epoch too: another node's
    change of it is seen at this node's next group commit, however long the TTL."""
    h = await make_harness(token_cache_ttl=LONG)
    only(h, "postgresql")
    ws = await h.workspace()
    a = await h.counter(ws, "a")
    await h.counter(ws, "b")
    writer = await h.token(ws, Permission.WRITE)
    await h.store.change_counter(a.id, CounterChange(unique_window=86400))
    assert h.app.services is not None
    h.app.services.counters.cache.forget(("ws", "a"))
    for agent, counted in (("x/1", True), ("y/2", True)):
        r = await h.client.get("/v2/ws/a/up", headers={"User-Agent": agent})
        assert r.json()["data"]["counted"] is counted
    other = await other_node(h)
    try:
        await other.change_counter(a.id, CounterChange(unique_by_address=True))
    finally:
        await other.close()
    assert (await h.get("/v2/ws/b/up", writer)).status_code == 200  # a commit: the epoch
    for agent, counted in (("z/3", True), ("w/4", False)):  # by address alone now
        r = await h.client.get("/v2/ws/a/up", headers={"User-Agent": agent})
        assert r.json()["data"]["counted"] is counted


async def test_postgres_a_change_from_any_session_is_seen(
    make_harness: HarnessFactory, postgres_base_url: str
) -> None:
    """A change made in a session whose search_path does not name the schema (psql, a
    script) moves the settings epoch too: the trigger finds its own schema's table."""
    h = await make_harness(token_cache_ttl=LONG)
    only(h, "postgresql")
    store = h.store
    assert isinstance(store, PostgresStore)
    assert store.schema is not None
    ws = await h.workspace()
    a = await h.counter(ws, "a")
    await h.counter(ws, "b")
    writer = await h.token(ws, Permission.WRITE)
    assert (await h.get("/v2/ws/a")).status_code == 200  # cached, public
    update = sql.SQL("UPDATE {}.counters SET private = TRUE WHERE id = %s").format(
        sql.Identifier(store.schema)
    )
    async with await psycopg.AsyncConnection.connect(postgres_base_url, autocommit=True) as conn:
        await conn.execute(update, (a.id,))
    assert (await h.get("/v2/ws/b/up", writer)).status_code == 200
    assert_error(await h.get("/v2/ws/a"), 404)


async def test_postgres_idle_node_falls_back_to_the_ttl(make_harness: HarnessFactory) -> None:
    """Without commits of this node, another node's change shows within the TTL."""
    h = await make_harness(token_cache_ttl=0.2)
    only(h, "postgresql")
    ws = await h.workspace()
    c = await h.counter(ws, "c")
    assert (await h.get("/v2/ws/c")).status_code == 200
    other = await other_node(h)
    try:
        await other.change_counter(c.id, CounterChange(private=True))
    finally:
        await other.close()
    await asyncio.sleep(0.3)
    assert_error(await h.get("/v2/ws/c"), 404)


async def test_counts_do_not_invalidate(make_harness: HarnessFactory) -> None:
    """Batches of counts leave the settings epoch alone: a busy node keeps its cache."""
    h = await make_harness(token_cache_ttl=LONG)
    ws = await h.workspace()
    await h.counter(ws, "c")
    writer = await h.token(ws, Permission.WRITE)
    await h.get("/v2/ws/c/up", writer)
    known = h.store.settings_known()
    assert known is not None
    for _ in range(5):
        assert (await h.get("/v2/ws/c/up", writer)).status_code == 200
    after = h.store.settings_known()
    assert after is not None
    assert after[0] == known[0]
    assert after[1] >= known[1]


async def test_a_tokens_last_use_keeps_the_cache(make_harness: HarnessFactory) -> None:
    """A token's last use (written at most once a minute per token, for every active
    token) is no settings change: it must not drop the node's cached lookups."""
    h = await make_harness(token_cache_ttl=LONG)
    ws = await h.workspace()
    await h.counter(ws, "c")
    writer = await h.token(ws, Permission.WRITE)
    assert (await h.get("/v2/ws/c/up")).status_code == 200  # a commit: the epoch as of now
    known = h.store.settings_known()
    assert known is not None
    assert (await h.get("/v2/ws/c/up", writer)).status_code == 200  # the token's first use
    assert h.app.services is not None
    await h.app.services.verifier.drain()
    assert [t.last_used_at is not None for t in await h.store.list_tokens(ws.id)] == [True]
    assert (await h.get("/v2/ws/c/up")).status_code == 200  # a commit sees the epoch again
    after = h.store.settings_known()
    assert after is not None
    assert after[0] == known[0]


async def test_postgres_another_node_counts_do_not_invalidate(
    make_harness: HarnessFactory,
) -> None:
    """Another node's batches of counts (plain and checked) move no settings epoch: the
    triggers of 0008_spread_writes.sql fire on settings only."""
    h = await make_harness(token_cache_ttl=LONG)
    only(h, "postgresql")
    ws = await h.workspace()
    c = await h.counter(ws, "c")
    writer = await h.token(ws, Permission.WRITE)
    await h.get("/v2/ws/c/up", writer)
    known = h.store.settings_known()
    assert known is not None
    other = await other_node(h)
    try:
        for seq, delta in enumerate([CounterDelta(up=2), CounterDelta(down=1, check=2)], 1):
            await other.apply(BatchChanges(seq, {c.id: delta}, {}))
    finally:
        await other.close()
    assert (await h.get("/v2/ws/c/up", writer)).json()["data"]["up_count"] == 4
    after = h.store.settings_known()
    assert after is not None
    assert after[0] == known[0]


def test_cache_is_bounded_and_keeps_the_recently_used() -> None:
    cache = CounterCache(LONG, lambda: (7, time.monotonic()), max_entries=3)
    now = time.monotonic()
    for n in range(3):
        cache.put(("ws", f"c{n}"), _counter(n), now, 7)
    assert cache.get(("ws", "c0"), now) is not None  # c0 now the most recently used
    cache.put(("ws", "c3"), _counter(3), now, 7)
    assert len(cache) == 3
    assert cache.get(("ws", "c1"), now) is None  # the least recently used went
    assert cache.get(("ws", "c0"), now) is not None


def test_cache_entries_of_another_epoch_are_stale() -> None:
    epoch = [1]
    cache = CounterCache(LONG, lambda: (epoch[0], time.monotonic()))
    now = time.monotonic()
    cache.put(("ws", "c"), _counter(1), now, cache.epoch())
    assert cache.get(("ws", "c"), now) is not None
    epoch[0] = 2
    assert cache.get(("ws", "c"), now) is None
    cache.put(("ws", "c"), None, now, 1)  # read under an epoch that was gone by then
    assert cache.get(("ws", "c"), now) is None


def test_cache_without_exact_knowledge_uses_the_ttl() -> None:
    cache = CounterCache(10.0)
    cache.put(("ws", "c"), _counter(1), 100.0, cache.epoch())
    assert cache.get(("ws", "c"), 109.0) is not None
    assert cache.get(("ws", "c"), 110.5) is None
