"""The Store contract for a change of a counter's settings (`change_counter`): one call,
one transaction, all or nothing, its check of new bounds against the value made in that
transaction; every backend."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import POSTGRES_URL
from test_store_contract import batch

from tally.errors import Conflict, StorageError
from tally.models import Counter, CounterChange, CounterDelta
from tally.storage import Store
from tally.storage.postgres import PostgresStore
from tally.storage.sqlite import SQLiteStore

EVERYTHING = CounterChange(
    description="new",
    private=True,
    bounds=(-10, 10),
    origins=("https://a.example",),
    unique_window=7200,
)

# a trigger that fails the UPDATE of a change that sets the unique window to 7200
_FAIL_SQLITE = """
CREATE TRIGGER fail_window BEFORE UPDATE OF unique_window ON counters
WHEN NEW.unique_window = 7200 BEGIN SELECT RAISE(ABORT, 'injected failure'); END
"""
_FAIL_POSTGRES = """
CREATE FUNCTION fail_window() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;
CREATE TRIGGER fail_window BEFORE UPDATE OF unique_window ON counters
FOR EACH ROW WHEN (NEW.unique_window = 7200) EXECUTE FUNCTION fail_window()
"""


class Outside:
    """An autocommit connection of the test's own to the store's database."""

    def __init__(self, store: Store) -> None:
        if isinstance(store, SQLiteStore):
            self.sqlite: sqlite3.Connection | None = sqlite3.connect(
                store.path, isolation_level=None
            )
            self.postgres: psycopg.Connection[Any] | None = None
        else:
            assert isinstance(store, PostgresStore)
            self.sqlite = None
            self.postgres = psycopg.connect(
                POSTGRES_URL, autocommit=True, options=f"-c search_path={store.schema}"
            )

    def run(self, sqlite_sql: str, postgres_sql: str, params: tuple[Any, ...] = ()) -> None:
        """Run the statement in the backend's dialect."""
        if self.sqlite is not None:
            self.sqlite.execute(sqlite_sql, params)
        else:
            assert self.postgres is not None
            self.postgres.execute(postgres_sql.encode(), params)

    def script(self, sqlite_sql: str, postgres_sql: str) -> None:
        """Run a script of statements without parameters in the backend's dialect."""
        if self.sqlite is not None:
            self.sqlite.executescript(sqlite_sql)
        else:
            assert self.postgres is not None
            self.postgres.execute(postgres_sql.encode())

    def close(self) -> None:
        for conn in (self.sqlite, self.postgres):
            if conn is not None:
                conn.close()


@contextlib.contextmanager
def outside(store: Store) -> Iterator[Outside]:
    conn = Outside(store)
    try:
        yield conn
    finally:
        conn.close()


async def counter_at(store: Store, value: int) -> Counter:
    """A new counter whose committed value is `value`."""
    ws = await store.create_workspace("ws", "ws")
    c = await store.create_counter(ws.id, "c", description="old")
    await store.apply(batch(1, (c.id, CounterDelta(max(value, 0), max(-value, 0), False, 1.0))))
    read = await store.get_counter_by_id(c.id)
    assert read is not None
    return read


def settings(c: Counter | None) -> tuple[object, ...]:
    assert c is not None
    return (c.description, c.private, c.floor, c.ceiling, c.origins, c.unique_window)


async def test_a_change_saves_its_fields_and_keeps_the_others(store: Store) -> None:
    """Every field given is saved at once, a field left None is kept; a missing counter
    is None, and a change that sets nothing returns the counter as it is."""
    c = await counter_at(store, 0)
    saved = await store.change_counter(c.id, EVERYTHING)
    assert settings(saved) == ("new", True, -10, 10, ("https://a.example",), 7200)
    assert saved == await store.read_counter("ws", "c")
    kept = await store.change_counter(c.id, CounterChange(description="newer"))
    assert settings(kept) == ("newer", True, -10, 10, ("https://a.example",), 7200)
    cleared = await store.change_counter(c.id, CounterChange(bounds=(None, None), origins=()))
    assert settings(cleared) == ("newer", True, None, None, (), 7200)
    assert settings(await store.change_counter(c.id, CounterChange())) == settings(cleared)
    assert await store.change_counter(424242, EVERYTHING) is None


async def test_a_new_bound_the_value_breaks_is_refused_with_nothing_changed(
    store: Store,
) -> None:
    """A new floor or ceiling the committed value breaks is a Conflict naming the value,
    and no field of the change is saved; a bound equal to the value is fine, and a bound
    that stays as stored is not checked again."""
    c = await counter_at(store, 3)
    for bounds, says in [
        ((None, 2), "the counter's value is 3, above a ceiling of 2"),
        ((4, None), "the counter's value is 3, below a floor of 4"),
    ]:
        with pytest.raises(Conflict, match=says):
            await store.change_counter(
                c.id, CounterChange(description="not saved", bounds=bounds, unique_window=3600)
            )
        assert settings(await store.get_counter_by_id(c.id)) == settings(c)
    assert (await store.change_counter(c.id, CounterChange(bounds=(3, 3)))) is not None
    await store.apply(batch(2, (c.id, CounterDelta(2, 0, False, 1.0))))  # unchecked: at 5
    kept = await store.change_counter(c.id, CounterChange(bounds=(-1, 3), description="x"))
    assert settings(kept)[:4] == ("x", False, -1, 3)


async def test_a_failure_inside_the_transaction_changes_nothing(store: Store) -> None:
    """A change whose UPDATE fails half-way (a trigger refuses its unique window) saves
    none of its other fields: description, visibility, bounds and origins stay."""
    c = await counter_at(store, 0)
    with outside(store) as conn:
        conn.script(_FAIL_SQLITE, _FAIL_POSTGRES)
    with pytest.raises(StorageError, match="injected failure"):
        await store.change_counter(c.id, EVERYTHING)
    assert settings(await store.get_counter_by_id(c.id)) == settings(c)
    saved = await store.change_counter(c.id, CounterChange(description="new", unique_window=3600))
    assert settings(saved) == ("new", False, None, None, (), 3600)


async def test_the_value_is_checked_in_the_saving_transaction(store: Store) -> None:
    """A count that commits while a new ceiling is being saved cannot slip between the
    check and the save: the change waits for it, then sees the value it left."""
    c = await counter_at(store, 0)
    with outside(store) as conn:
        conn.run("BEGIN IMMEDIATE", "BEGIN")
        conn.run(
            "UPDATE counters SET up_count = up_count + 50 WHERE id = ?",
            "UPDATE counters SET up_count = up_count + 50 WHERE id = %s",
            (c.id,),
        )
        change = asyncio.create_task(store.change_counter(c.id, CounterChange(bounds=(None, 10))))
        await asyncio.sleep(0.3)
        assert not change.done()  # waiting for the count's transaction
        conn.run("COMMIT", "COMMIT")
        with pytest.raises(Conflict, match="the counter's value is 50, above a ceiling of 10"):
            await change
    stored = await store.get_counter_by_id(c.id)
    assert stored is not None
    assert (stored.up_count, stored.ceiling) == (50, None)
