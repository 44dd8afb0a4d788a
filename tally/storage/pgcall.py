"""Lean PostgreSQL calls for the hot paths: one prepared statement called over and over
on a connection of its own, with libpq's asynchronous API and one socket reader
registered for the connection's whole life.

The group commit calls `tally_apply` once per batch, and every `get` reads a counter's
totals. psycopg's general machinery (a cursor, the prepare cache, a pooled connection,
and a reader added and removed on the event loop at every wait: two epoll_ctl system
calls each time) cost more CPU than the round trip itself. Here a call is: send the
prepared statement with its parameters as text, await a future, and parse the rows the
reader collected. `PreparedCall` is one such statement (the group commit's);
`BatchedLookup` batches reads by id over one. Errors of any kind, and calls without an
answer in time, close the connection (the next call opens a new one) and raise
StorageError: `ServerError` when the server refused the call (nothing committed),
`OutcomeUnknown` when the call may have reached the server but no answer came back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg import pq

from tally.errors import OutcomeUnknown, StorageError

Row = tuple[bytes | None, ...]


class ServerError(StorageError):
    """The server answered the call with an error: its transaction did not commit."""


class PreparedCall:
    """`sql` prepared once as `name` on `conn` (autocommit, not used by anything else).
    A call without an answer within `timeout` seconds fails (a network that drops
    packets silently would otherwise hold it until TCP gives up, many minutes)."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection[object],
        name: bytes,
        sql: bytes,
        timeout: float = 10.0,
    ) -> None:
        self._conn = conn
        self.timeout = timeout
        self._pg = conn.pgconn
        self._name = name
        self._sql = sql
        self._loop = asyncio.get_running_loop()
        self._fd = self._pg.socket
        self._waiter: asyncio.Future[list[pq.abc.PGresult]] | None = None
        self._results: list[pq.abc.PGresult] = []
        self._prepared = False
        self.closed = False
        self._loop.add_reader(self._fd, self._readable)

    async def __call__(self, params: Sequence[bytes | None]) -> list[Row]:
        """Run the statement with `params` (text format); its rows, values as text."""
        if self.closed:
            raise StorageError("postgresql: the connection is closed")
        sent = False  # once the call may have reached the server, a failure is no answer
        try:
            async with asyncio.timeout(self.timeout):
                if not self._prepared:
                    await self._roundtrip(lambda: self._pg.send_prepare(self._name, self._sql))
                    self._prepared = True
                sent = True
                results = await self._roundtrip(
                    lambda: self._pg.send_query_prepared(self._name, params)
                )
            rows: list[Row] = []
            for res in results:
                if res.status == pq.ExecStatus.TUPLES_OK:
                    width = res.nfields
                    rows += (
                        tuple(res.get_value(i, j) for j in range(width)) for i in range(res.ntuples)
                    )
            return rows
        except TimeoutError:
            await self.close()
            message = f"postgresql: no answer within {self.timeout:g} s"
            raise (OutcomeUnknown if sent else StorageError)(message) from None
        except ServerError:
            await self.close()  # the server's answer: the call's transaction rolled back
            raise
        except StorageError as exc:
            await self.close()
            if sent:
                raise OutcomeUnknown(str(exc)) from exc
            raise
        except BaseException:
            await self.close()
            raise

    async def _roundtrip(self, send: Callable[[], object]) -> list[pq.abc.PGresult]:
        try:
            send()
            while self._pg.flush():  # 1: libpq could not send it all yet
                await self._writable()
        except psycopg.Error as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        self._waiter = self._loop.create_future()
        results = await self._waiter
        for res in results:
            if res.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
                message = res.error_message.decode("utf-8", "replace").strip()
                raise ServerError(f"postgresql: {message or pq.ExecStatus(res.status).name}")
        return results

    async def _writable(self) -> None:
        ready: asyncio.Future[None] = self._loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self._loop.add_writer(self._fd, wake)
        try:
            await ready
        finally:
            self._loop.remove_writer(self._fd)

    def _readable(self) -> None:
        waiter = self._waiter
        try:
            self._pg.consume_input()
            if waiter is None:  # nothing asked: a notice or a parameter change
                return
            while not self._pg.is_busy():
                res = self._pg.get_result()
                if res is None:  # the call's last result
                    self._waiter, self._results, results = None, [], self._results
                    if not waiter.done():
                        waiter.set_result(results)
                    return
                self._results.append(res)
        except psycopg.Error as exc:  # the connection broke
            self._loop.remove_reader(self._fd)
            self.closed = True
            if waiter is not None and not waiter.done():
                waiter.set_exception(StorageError(f"postgresql: {exc}"))

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._loop.remove_reader(self._fd)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.cancel()
        if not self._conn.closed:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()


class BatchedLookup:
    """Lookups of rows by id, batched like the group commit batches writes.

    Every lookup waiting when a query goes out shares it: `sql` is prepared with $1 =
    `first` and $2 = the ids as a bigint[] literal, and the first column of each row it
    returns is the id. A lookup never joins a query already sent, so its snapshot is
    always taken after it was asked for: batching costs no freshness. One query is in
    flight at a time, on a connection of its own; a failed query is tried once more on
    a new connection (after a database restart the old one fails once; a read may be
    repeated), then its lookups fail with StorageError.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]],
        name: bytes,
        sql: bytes,
        first: bytes,
        timeout: float = 10.0,
    ) -> None:
        self._connect = connect
        self.timeout = timeout
        self._name = name
        self._sql = sql
        self._first = first
        self._call: PreparedCall | None = None
        self._waiting: list[tuple[int, asyncio.Future[Row | None]]] = []
        self._task: asyncio.Task[None] | None = None
        self.queries = 0  # statements sent
        self.lookups = 0  # lookups they answered
        self._closed = False

    async def get(self, row_id: int) -> Row | None:
        if self._closed:
            raise StorageError("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Row | None] = loop.create_future()
        self._waiting.append((row_id, future))
        if self._task is None:  # starts next tick, with every lookup asked until then
            self._task = loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                ids = sorted({row_id for row_id, _ in batch})
                try:
                    rows = await self._query(b"{" + b",".join(b"%d" % i for i in ids) + b"}")
                except BaseException as exc:  # never leave a lookup hanging
                    error = exc if isinstance(exc, StorageError) else StorageError(repr(exc))
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    if not isinstance(exc, Exception):  # cancelled: the store is closing
                        raise
                    continue
                self.queries += 1
                self.lookups += len(batch)
                found = {int(row[0] or 0): row for row in rows}
                for row_id, future in batch:
                    if not future.done():
                        future.set_result(found.get(row_id))
        finally:
            self._task = None

    async def _query(self, ids: bytes) -> list[Row]:
        for attempt in (1, 2):
            try:
                if self._call is None or self._call.closed:
                    conn = await self._connect()
                    self._call = PreparedCall(conn, self._name, self._sql, self.timeout)
                return await self._call([self._first, ids])
            except (StorageError, psycopg.Error) as exc:
                if attempt == 2:
                    if isinstance(exc, StorageError):
                        raise
                    raise StorageError(f"postgresql: {exc}") from exc
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self._closed = True  # for good: a lookup after this fails at once
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for _, future in self._waiting:
            if not future.done():
                future.set_exception(StorageError("the store is closed"))
        self._waiting = []
        call, self._call = self._call, None
        if call is not None:
            await call.close()
