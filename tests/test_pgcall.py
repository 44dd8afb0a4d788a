"""PreparedCall: the group commit's lean client for one prepared statement."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from tally.errors import StorageError
from tally.storage.pgcall import PreparedCall

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
