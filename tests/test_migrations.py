"""The migration runner, on every backend: upgrades keep data, run once, and all or nothing.

There is one real migration so far, so these tests add a synthetic second one. It leaves
its mark in `tally_meta`, which the Store API can read on any backend.
"""

from __future__ import annotations

import asyncio

import pytest

from tally.errors import StorageError
from tally.models import BatchChanges, CounterDelta, Permission
from tally.storage import Store, migrations, store_from_url
from tally.storage.migrations import Migration

REAL_LOAD = migrations.load

# Creates `probe`, fills it, and copies its row into tally_meta: a second run fails on
# CREATE TABLE, and meta key "probe" proves that the table exists and holds the row.
PROBE = """
CREATE TABLE probe (x INTEGER);
INSERT INTO probe (x) VALUES (42);
INSERT INTO tally_meta (key, value) SELECT 'probe', CAST(x AS TEXT) FROM probe;
"""
# PostgreSQL: hold the migration open a while, so concurrent openers truly overlap.
SLOW = {"postgresql": "SELECT pg_sleep(0.3);", "sqlite": ""}


def add_migration(monkeypatch: pytest.MonkeyPatch, sql: str, *, slow: bool = False) -> None:
    """Make `migrations.load` return the real migrations plus `sql` as the next version."""

    def load(dialect: str) -> list[Migration]:
        real = REAL_LOAD(dialect)
        script = (SLOW[dialect] if slow else "") + sql
        return [*real, Migration(len(real) + 1, "test", script)]

    monkeypatch.setattr(migrations, "load", load)


def newest(store: Store) -> int:
    """The newest real schema version of the store's dialect."""
    return len(REAL_LOAD(store.dialect))


async def opened(url: str, node: str = "n") -> Store:
    store = store_from_url(url, node=node)
    await store.open()
    return store


async def test_an_older_schema_is_upgraded_and_keeps_its_data(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at an older schema version is upgraded on open, its data untouched."""
    store = await opened(store_url)
    try:
        ws = await store.create_workspace("ws", "ws")
        c = await store.create_counter(ws.id, "c")
        changes = BatchChanges(
            seq=3, counters={c.id: CounterDelta(5, 2, False, 0.0)}, hours={(c.id, 10): [5, 2]}
        )
        await store.apply(changes)
        assert await store.schema_version() == newest(store)
    finally:
        await store.close()

    add_migration(monkeypatch, PROBE)
    store = await opened(store_url)
    try:
        assert await store.schema_version() == newest(store) + 1
        assert await store.meta_get_or_set("probe", "missing") == "42"
        read = await store.read_counter("ws", "c")
        assert read is not None
        assert (read.up_count, read.down_count, read.seq) == (5, 2, 3)
        assert (await store.read_history(c.id)).buckets == [(10, 5, 2)]
        assert await store.register_node() == 3
    finally:
        await store.close()


async def open_both(url: str) -> tuple[Store, Store]:
    """Open two nodes' stores on `url` at the same time; both must succeed."""
    one, two = store_from_url(url, node="one"), store_from_url(url, node="two")
    results = await asyncio.gather(one.open(), two.open(), return_exceptions=True)
    errors = [r for r in results if r is not None]
    if errors:
        await one.close()
        await two.close()
    assert errors == []
    return one, two


@pytest.mark.parametrize("existing", [True, False], ids=["upgrade", "first-open"])
async def test_concurrent_opens_migrate_once(
    store_url: str, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    """Two nodes opening one database at once (older or empty) apply a migration once."""
    if existing:
        await (await opened(store_url)).close()
    add_migration(monkeypatch, PROBE, slow=True)
    stores = await open_both(store_url)
    try:
        for store in stores:
            assert await store.schema_version() == newest(store) + 1
            assert await store.meta_get_or_set("probe", "missing") == "42"
    finally:
        for store in stores:
            await store.close()


async def test_a_failing_migration_changes_nothing(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration that fails halfway leaves the schema at the version before it."""
    await (await opened(store_url)).close()

    add_migration(monkeypatch, PROBE + "SELECT x FROM no_such_table;")
    broken = store_from_url(store_url, node="n")
    with pytest.raises(StorageError):
        await broken.open()
    await broken.close()

    add_migration(monkeypatch, PROBE)  # fails on CREATE TABLE if `probe` was left behind
    store = await opened(store_url)
    try:
        assert await store.schema_version() == newest(store) + 1
        assert await store.meta_get_or_set("probe", "missing") == "42"
    finally:
        await store.close()


async def test_the_accounts_migration_keeps_counters_and_tokens(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database from before the dashboard (sqlite 0001, postgresql 0004) is upgraded
    with its counters (same ids, counts, history) and tokens intact."""
    dialect = "sqlite" if store_url.startswith("sqlite") else "postgresql"
    before = {"sqlite": 1, "postgresql": 4}[dialect]
    monkeypatch.setattr(migrations, "load", lambda d: REAL_LOAD(d)[:before])
    old = await opened(store_url)
    try:  # the old schema's own SQL: today's store methods read columns it lacks
        change = old._change  # type: ignore[attr-defined]
        [[(ws_id,)]] = await change(
            [
                (
                    "INSERT INTO workspaces (slug, name, created_at) "
                    "VALUES ('ws', 'ws', 1) RETURNING id",
                    (),
                )
            ]
        )
        [[(counter_id,)], _] = await change(
            [
                (
                    "INSERT INTO counters (workspace_id, name, description, up_count, "
                    "down_count, created_at, updated_at) VALUES (%s, 'c', 'kept', 4, 1, 1, 2) "
                    "RETURNING id",
                    (ws_id,),
                ),
                (
                    "INSERT INTO tokens (workspace_id, name, prefix, hash, permission, "
                    "created_at) VALUES (%s, 't', 'tly_x', 'hash', 1, 1)",
                    (ws_id,),
                ),
            ]
        )
        await change([("INSERT INTO counter_hours VALUES (%s, 10, 4, 1)", (counter_id,))])
        assert await old.schema_version() == before
    finally:
        await old.close()
    monkeypatch.setattr(migrations, "load", REAL_LOAD)
    new = await opened(store_url)
    try:
        assert await new.schema_version() == newest(new)
        counter = await new.read_counter("ws", "c")
        assert counter is not None
        assert (counter.id, counter.up_count, counter.down_count, counter.description) == (
            counter_id,
            4,
            1,
            "kept",
        )
        assert (await new.read_history(counter_id)).buckets == [(10, 4, 1)]
        token = await new.find_token("hash")
        assert token is not None
        assert token.permission is Permission.READ
        assert token.expires_at is None
        assert token.created_by is None  # made before its creator was recorded
        assert await new.token_creators(ws_id) == {}
        assert await new.delete_counter(counter_id)
        assert (await new.create_counter(ws_id, "d")).id > counter_id
    finally:
        await new.close()
