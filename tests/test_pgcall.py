"""PreparedCall: the group commit's lean client for one prepared statement."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from services import TcpProxy

from tally.errors import StorageError
from tally.models import BatchChanges, CounterDelta
from tally.storage.pgcall import BatchedLookup, PreparedCall
from tally.storage.postgres import PostgresStore

pytestmark = pytest.mark.postgres

SQL = b"SELECT n, $1::text || n FROM generate_series(1, $2::int) AS n"


async def prepared(url: str, sql: bytes = SQL) -> PreparedCall:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    return PreparedCall(conn, b"t", sql)


async def test_rows_come_back_as_text_call_after_call(postgres_base_url: str) -> None:
    call = await prepared(postgres_base_url)
    try:
        assert await call([b"x", b"2"]) == [(b"1", b"x1"), (b"2", b"x2")]
        assert await call([b"y", b"0"]) == []
        assert await call([None, b"1"]) == [(b"1", None)]
    finally:
        await call.close()


async def test_an_error_raises_and_closes(postgres_base_url: str) -> None:
    call = await prepared(postgres_base_url)
    with pytest.raises(StorageError, match="invalid input syntax"):
        await call([b"x", b"not a number"])
    assert call.closed
    with pytest.raises(StorageError, match="closed"):
        await call([b"x", b"1"])


async def test_a_bad_statement_fails_at_prepare(postgres_base_url: str) -> None:
    call = await prepared(postgres_base_url, b"SELECT FROM nowhere_at_all")
    with pytest.raises(StorageError, match="nowhere_at_all"):
        await call([])
    assert call.closed


async def test_a_connection_killed_while_idle_fails_the_next_call(
    postgres_base_url: str,
) -> None:
    """The server ends the session between two calls: the next call raises, never hangs."""
    conn = await psycopg.AsyncConnection.connect(postgres_base_url, autocommit=True)
    call = PreparedCall(conn, b"t", SQL)
    assert await call([b"x", b"1"]) == [(b"1", b"x1")]
    with psycopg.connect(postgres_base_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (conn.pgconn.backend_pid,))
    with pytest.raises(StorageError):
        await asyncio.wait_for(call([b"x", b"1"]), timeout=10)
    assert call.closed
    await call.close()


async def test_a_cancelled_call_closes_the_connection(postgres_base_url: str) -> None:
    """A call given up halfway leaves the connection in an unknown state: it is closed."""
    call = await prepared(postgres_base_url, b"SELECT pg_sleep($1::float8)")
    task = asyncio.create_task(call([b"5"]))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert call.closed


def lookup(url: str, sql: bytes) -> BatchedLookup:
    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(url, autocommit=True)

    return BatchedLookup(connect, b"lookup", sql, b"unused")


@pytest.fixture
def table(postgres_base_url: str) -> Iterator[str]:
    """A conninfo whose table t(id, v) holds (1, 10) and (2, 20), in a schema of its own."""
    schema = f"tally_test_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL("CREATE TABLE {}.t (id BIGINT PRIMARY KEY, v BIGINT)").format(
                sql.Identifier(schema)
            )
        )
        conn.execute(
            sql.SQL("INSERT INTO {}.t VALUES (1, 10), (2, 20)").format(sql.Identifier(schema))
        )
    yield make_conninfo(postgres_base_url, options=f"-c search_path={schema}")
    with psycopg.connect(postgres_base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


LOOKUP = b"SELECT id, v FROM t WHERE id = ANY($2::bigint[]) AND $1::text IS NOT NULL"


async def test_lookups_of_one_tick_share_one_query(table: str) -> None:
    reads = lookup(table, LOOKUP)
    try:
        rows = list(await asyncio.gather(reads.get(1), reads.get(2), reads.get(1), reads.get(3)))
        assert rows == [(b"1", b"10"), (b"2", b"20"), (b"1", b"10"), None]
        assert (reads.queries, reads.lookups) == (1, 4)
    finally:
        await reads.close()


async def test_a_lookup_never_joins_a_query_already_sent(table: str) -> None:
    """A lookup asked while a query is out waits for the next one: its snapshot is
    taken after it was asked, so it sees a write committed before that."""
    slow = LOOKUP.replace(b"WHERE", b"CROSS JOIN pg_sleep(0.3) WHERE")
    reads = lookup(table, slow)
    try:
        first = asyncio.create_task(reads.get(1))
        await asyncio.sleep(0.1)  # the first query is out, its snapshot taken
        async with await psycopg.AsyncConnection.connect(table, autocommit=True) as conn:
            await conn.execute("UPDATE t SET v = 11 WHERE id = 1")
        second = await reads.get(1)
        assert await first == (b"1", b"10")
        assert second == (b"1", b"11")
        assert reads.queries == 2
    finally:
        await reads.close()


async def test_a_connection_lost_while_idle_is_replaced(table: str) -> None:
    """After the server ended the lookups' connection, the next lookup reconnects."""
    reads = lookup(table, LOOKUP)
    try:
        assert await reads.get(2) == (b"2", b"20")
        with psycopg.connect(table, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND query LIKE %s",
                ("%FROM t WHERE%",),
            )
        assert await asyncio.wait_for(reads.get(2), timeout=10) == (b"2", b"20")
    finally:
        await reads.close()


async def test_closing_fails_lookups_in_flight(table: str) -> None:
    slow = LOOKUP.replace(b"WHERE", b"CROSS JOIN pg_sleep(1) WHERE")
    reads = lookup(table, slow)
    waiting = asyncio.create_task(reads.get(1))
    await asyncio.sleep(0.2)
    await reads.close()
    with pytest.raises(StorageError):
        await waiting


async def test_a_silent_network_fails_commits_and_reads_in_time(postgres_url: str) -> None:
    """With the database's packets held (no reset, no error), a group commit and a read
    fail after the call timeout instead of hanging; once packets flow, a new connection
    carries on."""
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = postgres_url.replace(target.netloc, f"{target.username}@127.0.0.1:{proxy.port}")
    store = PostgresStore.from_url(url, node="silent", call_timeout=0.5)
    await store.open()
    try:
        ws = await store.create_workspace("ws", "ws")
        counter = await store.create_counter(ws.id, "c")
        one = BatchChanges(seq=1, counters={counter.id: CounterDelta(1, 0, False, 0.0)}, hours={})
        assert (await store.apply(one))[counter.id].up_count == 1
        assert await store.read_counts(counter.id) is not None
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(StorageError, match="no answer"):
            await store.apply(BatchChanges(seq=2, counters=one.counters, hours={}))
        with pytest.raises(StorageError):
            await store.read_counts(counter.id)
        assert time.monotonic() - started < 5
        proxy.resume()
        out = await store.apply(BatchChanges(seq=3, counters=one.counters, hours={}))
        assert out[counter.id].up_count in (2, 3)  # seq 2 may have landed unanswered
    finally:
        proxy.resume()
        await store.close()
        await proxy.cut()
