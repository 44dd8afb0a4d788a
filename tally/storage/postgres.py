"""Scale-out: any number of Tally nodes on one PostgreSQL database.

Every call borrows a connection from one async pool and runs in one explicit
transaction (autocommit is off). Reads are single statements: PostgreSQL gives each
statement one snapshot, so a counter and its node's `seq` always come from the same
one. `apply` writes a whole batch with three set-based statements, whatever its size.

URL: ``postgresql://user:password@host:5432/dbname`` (``postgres://`` also works), plus
libpq parameters such as ``?sslmode=require``, and two of Tally's own:

- ``schema=NAME``: keep every table in that schema (created if missing; lower-case
  letters, digits and ``_``). Tests use one schema per test.
- ``pool_max=N``: at most N connections per node (default 10).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, LiteralString
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.abc import Params
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow, tuple_row
from psycopg_pool import AsyncConnectionPool

from tally.errors import Conflict, QuotaReached, StorageError
from tally.models import (
    BatchChanges,
    Counter,
    CounterChange,
    CounterRecord,
    History,
    Permission,
    Token,
    Totals,
    Workspace,
)
from tally.storage import counter_change, migrations
from tally.storage.base import NO_END
from tally.storage.dashboard import (
    QUOTA,
    DashboardTables,
    Statement,
    check_quota,
    like_pattern,
)
from tally.storage.dashboard import Params as SqlParams
from tally.storage.pgcall import BatchedLookup, PreparedCall, Row
from tally.storage.rows import (
    COUNTER_COLUMNS,
    TOKEN_COLUMNS,
    WORKSPACE_COLUMNS,
    join_origins,
    to_counter,
    to_token,
    to_workspace,
)

NODE_IDLE_DAYS = 7
DEFAULT_POOL_MAX = 10
CONNECT_TIMEOUT = 10  # seconds; libpq waits forever by default
CALL_TIMEOUT = 10.0  # seconds a group commit or a batched read waits for its answer
# TCP keepalives (unless the URL sets them): a connection whose peer vanished without a
# word is found dead within about a minute instead of the system's two hours
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
POOL_TIMEOUT = 3.0  # seconds a call waits for a connection: then 503, not a hang

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

Connection = AsyncConnection[TupleRow]

_SEQ = "COALESCE((SELECT seq FROM node_seq WHERE node = %(node)s), 0)"
_READ_COUNTER = f"""
SELECT {COUNTER_COLUMNS}, {_SEQ}
FROM workspaces w JOIN counters c ON c.workspace_id = w.id
WHERE w.slug = %(slug)s AND c.name = %(name)s
"""
_READ_COUNTER_BY_ID = f"""
SELECT {COUNTER_COLUMNS}, {_SEQ}
FROM workspaces w JOIN counters c ON c.workspace_id = w.id
WHERE c.id = %(id)s
"""
# The inserted row is not in the statement's snapshot yet: read it from the CTE.
_CREATE_COUNTER = f"""
WITH c AS (
    INSERT INTO counters (workspace_id, name, description, private, created_at, updated_at)
    VALUES (%(workspace_id)s, %(name)s, %(description)s, %(private)s, %(now)s, %(now)s)
    RETURNING *
)
SELECT {COUNTER_COLUMNS}, {_SEQ} FROM c JOIN workspaces w ON w.id = c.workspace_id
"""
# ensure_counters: lock the workspaces' count rows (in order), with the counts and quotas
_LOCK_COUNTS = """
SELECT k.workspace_id, k.counters, COALESCE(w.counter_quota, %s)
FROM workspace_counts k JOIN workspaces w ON w.id = k.workspace_id
WHERE k.workspace_id = ANY(%s) ORDER BY k.workspace_id FOR UPDATE OF k
"""
_INSERT_COUNTERS = """
INSERT INTO counters (workspace_id, name, created_at, updated_at)
SELECT t.w, t.n, %(now)s, %(now)s FROM unnest(%(ws)s::bigint[], %(names)s::text[]) AS t(w, n)
ON CONFLICT (workspace_id, name) DO NOTHING RETURNING id, workspace_id, name
"""
_READ_NAMED = f"""
SELECT {COUNTER_COLUMNS}, {_SEQ}
FROM workspaces w JOIN counters c ON c.workspace_id = w.id
WHERE c.workspace_id = ANY(%(spaces)s) AND c.name = ANY(%(names)s)
"""
# Batched (pgcall.BatchedLookup): $1 the node, $2 the ids; one statement, one snapshot.
_READ_COUNTS = b"""
SELECT c.id, c.up_count, c.down_count, c.updated_at,
    COALESCE((SELECT seq FROM node_seq WHERE node = $1), 0)
FROM counters c WHERE c.id = ANY($2::bigint[])
"""
# One statement, one snapshot: the LEFT JOIN keeps the seq row when there is no bucket.
_READ_HISTORY = f"""
SELECT h.hour, h.up, h.down, s.seq
FROM (SELECT {_SEQ} AS seq) s
LEFT JOIN counter_hours h
    ON h.counter_id = %(id)s AND h.hour >= %(since)s AND h.hour < %(before)s
ORDER BY h.hour
"""
# "C" collation: order by code point, as SQLite does, whatever the database's locale.
_LIST_COUNTERS = f"""
SELECT {COUNTER_COLUMNS} FROM workspaces w JOIN counters c ON c.workspace_id = w.id
WHERE w.id = %s ORDER BY c.name COLLATE "C"
"""
_CREATE_TOKEN = f"""
WITH t AS (
    INSERT INTO tokens (workspace_id, name, prefix, hash, permission, created_at, expires_at,
        created_by)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING *
)
SELECT {TOKEN_COLUMNS} FROM t JOIN workspaces w ON w.id = t.workspace_id
"""
_FIND_TOKENS = f"SELECT {TOKEN_COLUMNS} FROM tokens t JOIN workspaces w ON w.id = t.workspace_id"

# Deadlocks: two nodes whose batches change overlapping counters would deadlock if
# each locked its rows in its own order. `locked` takes every row lock first, in id
# order (LockRows runs above the sort), and the UPDATE joins it, so it can touch no row
# before all of them are locked; MATERIALIZED keeps the planner from folding it away.
# `hours` below are inserted in (counter_id, hour) order for the same reason.
# A batch is one call of `tally_apply` (migrations/postgresql/0002_apply_function.sql)
# on the flusher's own autocommit connection: one statement and one round trip, so a hot
# counter's row stays locked only while the server runs it and flushes its WAL. The
# client side is `PreparedCall` (pgcall.py): parameters go as text literals, about 30 µs
# of client CPU per batch (a pooled transaction of four statements took ~430 µs).
# A batch with a checked change or a set (CounterDelta.plain is false) goes through
# tally_apply_ops (0006_counter_rules.sql) instead, on a connection of its own.
# The last column is the settings epoch (0008_spread_writes.sql), read once in the outer
# statement's snapshot, which the server takes after the call was sent: see
# PostgresStore.settings_known.
_APPLY_OPS = b"""
SELECT r_id, r_up, r_down, r_at, r_refused, r_old_up, r_old_down,
    (SELECT COALESCE(MAX(epoch), 0) FROM settings_epoch)
FROM tally_apply_ops(
    $1, $2::bigint, $3::float8, $4::bigint[], $5::bigint[], $6::bigint[], $7::boolean[],
    $8::float8[], $9::bigint[], $10::bigint[], $11::smallint[], $12::bigint[],
    $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[]
)
"""
_APPLY = b"""
SELECT r_id, r_up, r_down, r_at, (SELECT COALESCE(MAX(epoch), 0) FROM settings_epoch)
FROM tally_apply(
    $1, $2::bigint, $3::float8, $4::bigint[], $5::bigint[], $6::bigint[], $7::boolean[],
    $8::float8[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[]
)
"""


def _array(values: Iterable[int | float]) -> bytes:
    """A number array as PostgreSQL's text literal: b'{1,2.5}'."""
    return ("{" + ",".join(map(repr, values)) + "}").encode()


def _text(value: bytes | None) -> bytes:
    if value is None:  # not from these statements: every column read is NOT NULL
        raise StorageError("postgresql: NULL where a number was expected")
    return value


def _totals(row: tuple[bytes | None, ...], refused: bool = False) -> Totals:
    """Columns 1 to 3 of a row of tally_apply or of the batched counts read (text)."""
    return Totals(int(_text(row[1])), int(_text(row[2])), float(_text(row[3])), refused)


def _values(r: CounterRecord) -> tuple[object, ...]:
    return (r.description, r.private, r.up_count, r.down_count, r.created_at, r.updated_at)


def _columns(records: list[CounterRecord]) -> tuple[list[Any], ...]:
    """The records as columns for unnest(): name, then the fields of `_values`."""
    return (
        [r.name for r in records],
        [r.description for r in records],
        [r.private for r in records],
        [r.up_count for r in records],
        [r.down_count for r in records],
        [r.created_at for r in records],
        [r.updated_at for r in records],
    )


def _bools(values: Iterable[bool]) -> bytes:
    return ("{" + ",".join("t" if v else "f" for v in values) + "}").encode()


class PostgresStore(DashboardTables):
    """Store on a PostgreSQL database. Owns the tables of `migrations/postgresql/`."""

    _ilike = "ILIKE"
    _collate = ' COLLATE "C"'
    _lock_rules = "SELECT 1 FROM workspaces WHERE id = %s FOR UPDATE"
    _skip_locked = " FOR UPDATE SKIP LOCKED"
    _one_server = False

    dialect = "postgresql"
    # a commit costs a round trip, a server process's work and an fsync: under load,
    # 1 ms more per batch gives fewer, fuller transactions (measured on 2 nodes: about
    # 8 % more ups per second, PostgreSQL CPU per up 25 -> 18 us)
    commit_linger = 0.001

    def __init__(
        self,
        conninfo: str,
        *,
        node: str = "local",
        schema: str | None = None,
        pool_max: int = DEFAULT_POOL_MAX,
        options: str = "",
        call_timeout: float = CALL_TIMEOUT,
    ) -> None:
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"schema {schema!r}: use lower-case letters, digits and _")
        if pool_max < 1:
            raise ValueError("pool_max must be at least 1")
        self.node = node
        self.schema = schema
        self.pool_max = pool_max
        self._conninfo = conninfo
        if schema is not None:  # no round trip: the server sets it when a connection starts
            options = f"{options} -c search_path={schema}".strip()
        # autocommit: a read is one statement, and a pooled connection returned outside a
        # transaction needs no ROLLBACK; writes of several statements use transaction()
        self._kwargs: dict[str, Any] = {"autocommit": True, "row_factory": tuple_row}
        self._flusher: PreparedCall | None = None
        self._ops_flusher: PreparedCall | None = None  # batches with checks or sets
        # settings_known: moved on after every write of this node but a batch of counts,
        # and whenever a group commit reads another settings epoch of the database than
        # the previous commit read
        self._settings = (0, 0.0)  # (epoch, since): one object, replaced whole
        self._seen_epoch: bytes | None = None
        # reads of a counter's totals (every get): batched, on a connection of their own
        self.call_timeout = call_timeout
        self._counts = BatchedLookup(
            self._connect, b"tally_read_counts", _READ_COUNTS, node.encode(), call_timeout
        )
        if options:
            self._kwargs["options"] = options
        given = conninfo_to_dict(conninfo)
        if "connect_timeout" not in given:
            self._kwargs["connect_timeout"] = CONNECT_TIMEOUT
        if not any(key.startswith("keepalives") for key in given):
            self._kwargs.update(KEEPALIVES)
        self._pool: AsyncConnectionPool[Connection] | None = None

    @classmethod
    def from_url(
        cls, url: str, node: str = "local", call_timeout: float = CALL_TIMEOUT
    ) -> PostgresStore:
        parts = urlsplit(url)
        if parts.scheme.split("+", 1)[0].lower() not in ("postgresql", "postgres"):
            raise ValueError("the PostgreSQL URL must start with postgresql://")
        ours: dict[str, str] = {}
        libpq: list[tuple[str, str]] = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in ("schema", "pool_max", "options"):  # options: merged with search_path
                ours[key] = value
            else:
                libpq.append((key, value))
        pool_max = ours.get("pool_max", str(DEFAULT_POOL_MAX))
        if not pool_max.isdigit():
            raise ValueError(f"pool_max must be a whole number, not {pool_max!r}")
        conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(libpq), ""))
        return cls(
            conninfo,
            node=node,
            schema=ours.get("schema"),
            pool_max=int(pool_max),
            options=ours.get("options", ""),
            call_timeout=call_timeout,
        )

    # connections -------------------------------------------------------------

    def settings_known(self) -> tuple[int, float] | None:
        return self._settings

    def _saw_epoch(self, epoch: bytes | None, sent: float) -> None:
        """A group commit sent at the monotonic time `sent` read the database's settings
        epoch `epoch` in a snapshot the server took after that, so every change of
        settings committed before `sent` (by any node) is counted in it."""
        known, since = self._settings
        if epoch != self._seen_epoch:
            known += 1
            self._seen_epoch = epoch
        self._settings = (known, max(since, sent))

    def _wrote(self) -> None:
        """After a write of this node but a batch of counts (it may have changed
        settings): what it changed holds for the next lookup, as on SQLite."""
        known, since = self._settings
        self._settings = (known + 1, since)

    async def open(self) -> None:
        # Migrate on a connection of its own first: a bad URL or a server that is down
        # fails here with libpq's own message, not with a pool timeout.
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self._conninfo,
            kwargs=self._kwargs,
            min_size=1,
            max_size=self.pool_max,
            timeout=POOL_TIMEOUT,
            open=False,
            name=f"tally-{self.node}",
        )
        try:
            async with await AsyncConnection.connect(self._conninfo, **self._kwargs) as conn:
                await self._migrate(conn)
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except psycopg.Error as exc:
            await pool.close()
            raise StorageError(f"postgresql: {exc}") from exc
        self._pool = pool

    async def _migrate(self, conn: Connection) -> None:
        """Apply every migration newer than the stored schema_version, in one transaction.
        Nodes starting together queue on an advisory lock, so one of them migrates."""
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tally.migrate:{self.schema}",)
            )
            if self.schema is not None:
                # checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege
                # on the database even when the schema is there
                cur = await conn.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
                )
                if await cur.fetchone() is None:
                    await conn.execute(
                        sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema))
                    )
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS tally_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            cur = await conn.execute("SELECT value FROM tally_meta WHERE key = 'schema_version'")
            row = await cur.fetchone()
            current = int(row[0]) if row else 0
            for migration in migrations.load(self.dialect):
                if migration.version > current:
                    # no parameters: sent as one simple query, so a script of many statements
                    await conn.execute(migration.sql.encode())
                    current = migration.version
            await conn.execute(
                "INSERT INTO tally_meta (key, value) VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(current),),
            )

    async def _connect(self) -> Connection:
        """A connection of its own (not pooled) for the group commit or the batched reads,
        made as every other connection, within the call timeout.

        The server gives up on its statements before this client gives up waiting
        (`statement_timeout`, `lock_timeout`: half the call timeout). A call stuck on a
        lock is then refused by the server, a definite answer: it counted nothing. Only
        a call whose answer is lost (the network, a stalled WAL flush) is left with an
        unknown outcome, which `settle` resolves."""
        server_ms = max(1, int(self.call_timeout * 500))
        options = self._kwargs.get("options", "")
        options = f"{options} -c statement_timeout={server_ms} -c lock_timeout={server_ms}"
        kwargs = {**self._kwargs, "options": options.strip()}
        try:
            async with asyncio.timeout(self.call_timeout):
                return await Connection.connect(self._conninfo, **kwargs)
        except TimeoutError:
            raise StorageError(
                f"postgresql: no connection within {self.call_timeout:g} s"
            ) from None

    async def close(self) -> None:
        await self._counts.close()
        await self._drop_flusher()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def _tx(self, *, settings_kept: bool = False) -> AsyncIterator[Connection]:
        """A pooled connection inside one transaction; driver errors become ours.
        `settings_kept`: the transaction changes nothing a counter lookup returns."""
        if self._pool is None:
            raise StorageError("the store is not open")
        try:
            async with self._pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict(exc.diag.message_primary or str(exc)) from exc
        except psycopg.Error as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        finally:
            if not settings_kept:  # committed or not: a lost COMMIT answer may have changed things
                self._wrote()

    async def _rows(
        self, query: LiteralString, params: Params | None = None, *, read: bool = True
    ) -> list[TupleRow]:
        """One statement on a pooled connection: its own snapshot and transaction.

        A read is tried twice: after a database restart each idle pooled connection fails
        once, and a read can be repeated safely (a write might have happened)."""
        if self._pool is None:
            raise StorageError("the store is not open")
        for attempt in (1, 2) if read else (2,):
            try:
                async with self._pool.connection() as conn:
                    cur = await conn.execute(query, params)
                    return await cur.fetchall()
            except psycopg.errors.UniqueViolation as exc:
                raise Conflict(exc.diag.message_primary or str(exc)) from exc
            except psycopg.OperationalError as exc:
                if attempt == 2:
                    raise StorageError(f"postgresql: {exc}") from exc
            except psycopg.Error as exc:
                raise StorageError(f"postgresql: {exc}") from exc
            finally:
                if not read:
                    self._wrote()
        raise AssertionError("unreachable")

    async def _row(
        self, query: LiteralString, params: Params | None = None, *, read: bool = True
    ) -> TupleRow | None:
        rows = await self._rows(query, params, read=read)
        return rows[0] if rows else None

    async def _fetch(self, query: str, params: SqlParams = ()) -> list[tuple[Any, ...]]:
        # the dashboard's SQL (storage/dashboard.py) is built from constants and its own
        # allow-listed sort columns; values always travel as parameters
        return await self._rows(query.encode(), tuple(params))  # type: ignore[arg-type]

    async def _change(
        self, statements: Sequence[Statement], *, settings_kept: bool = False
    ) -> list[list[tuple[Any, ...]]]:
        out: list[list[tuple[Any, ...]]] = []
        async with self._tx(settings_kept=settings_kept) as conn:
            for query, params in statements:
                cur = await conn.execute(query.encode(), tuple(params))
                out.append(await cur.fetchall() if cur.description else [])
        return out

    # meta --------------------------------------------------------------------

    async def schema_version(self) -> int:
        row = await self._row("SELECT value FROM tally_meta WHERE key = 'schema_version'")
        return int(row[0]) if row else 0

    async def claim_node(self) -> None:
        try:
            async with self._tx() as conn:
                await conn.execute(
                    "INSERT INTO node_seq (node, seq, updated_at) VALUES (%s, 0, %s)",
                    (self.node, time.time()),
                )
        except Conflict:
            raise Conflict(f"node name {self.node!r} is already in use") from None

    async def register_node(self) -> int:
        async with self._tx() as conn:
            await conn.execute(
                "DELETE FROM node_seq WHERE updated_at < %s AND node <> %s",
                (time.time() - NODE_IDLE_DAYS * 86400, self.node),
            )
            # the node's row exists from now on: every tally_apply of this node locks it
            # first, so `settle` can wait for a call whose answer was lost
            await conn.execute(
                "INSERT INTO node_seq (node, seq, updated_at) VALUES (%s, 0, %s) "
                "ON CONFLICT (node) DO NOTHING",
                (self.node, time.time()),
            )
            cur = await conn.execute("SELECT seq FROM node_seq WHERE node = %s", (self.node,))
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def heartbeat(self, live_within: float) -> int:
        # the outer count does not see the CTE's update (one snapshot): this node is + 1
        now = time.time()
        row = await self._row(
            "WITH beat AS (UPDATE node_seq SET updated_at = %(now)s WHERE node = %(node)s) "
            "SELECT count(*) FROM node_seq WHERE updated_at >= %(since)s AND node <> %(node)s",
            {"now": now, "node": self.node, "since": now - live_within},
        )
        return 1 + (int(row[0]) if row else 0)

    async def meta_get_or_set(self, key: str, default: str) -> str:
        async with self._tx() as conn:
            await conn.execute(
                "INSERT INTO tally_meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                (key, default),
            )
            cur = await conn.execute("SELECT value FROM tally_meta WHERE key = %s", (key,))
            row = await cur.fetchone()
        if row is None:
            raise StorageError(f"meta key {key!r} vanished")
        return str(row[0])

    # workspaces --------------------------------------------------------------

    async def create_workspace(
        self,
        slug: str,
        name: str,
        created_at: float | None = None,
        *,
        v1_open: bool = False,
        origins: tuple[str, ...] = (),
    ) -> Workspace:
        now = time.time() if created_at is None else created_at
        try:
            row = await self._row(
                "INSERT INTO workspaces (slug, name, created_at, v1_open, origins) "
                f"VALUES (%s, %s, %s, %s, %s) RETURNING {WORKSPACE_COLUMNS}",
                (slug, name, now, v1_open, join_origins(origins)),
                read=False,
            )
        except Conflict:
            raise Conflict(f"workspace {slug!r} already exists") from None
        assert row is not None  # INSERT ... RETURNING returns the row or raises
        return to_workspace(row)

    async def get_workspace(self, slug: str) -> Workspace | None:
        row = await self._row(
            f"SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE slug = %s", (slug,)
        )
        return to_workspace(row) if row else None

    async def list_workspaces(self) -> list[Workspace]:
        rows = await self._rows(
            f'SELECT {WORKSPACE_COLUMNS} FROM workspaces ORDER BY slug COLLATE "C"'
        )
        return [to_workspace(r) for r in rows]

    async def set_workspace_rules(
        self, workspace_id: int, *, v1_open: bool, origins: tuple[str, ...]
    ) -> Workspace | None:
        row = await self._row(
            f"UPDATE workspaces SET v1_open = %s, origins = %s WHERE id = %s "
            f"RETURNING {WORKSPACE_COLUMNS}",
            (v1_open, join_origins(origins), workspace_id),
            read=False,
        )
        return to_workspace(row) if row else None

    async def set_page_counting(
        self, workspace_id: int, *, page_views: bool, honour_dnt: bool
    ) -> Workspace | None:
        row = await self._row(
            f"UPDATE workspaces SET page_views = %s, honour_dnt = %s WHERE id = %s "
            f"RETURNING {WORKSPACE_COLUMNS}",
            (page_views, honour_dnt, workspace_id),
            read=False,
        )
        return to_workspace(row) if row else None

    # tokens ------------------------------------------------------------------

    async def create_token(
        self,
        workspace_id: int,
        name: str,
        prefix: str,
        token_hash: str,
        permission: Permission,
        expires_at: float | None = None,
        *,
        created_by: int | None = None,
    ) -> Token:
        row = await self._row(
            _CREATE_TOKEN,
            (
                workspace_id,
                name,
                prefix,
                token_hash,
                int(permission),
                time.time(),
                expires_at,
                created_by,
            ),
            read=False,
        )
        if row is None:
            raise StorageError(f"workspace {workspace_id} vanished")
        return to_token(row)

    async def find_token(self, token_hash: str) -> Token | None:
        row = await self._row(f"{_FIND_TOKENS} WHERE t.hash = %s", (token_hash,))
        return to_token(row) if row else None

    async def list_tokens(self, workspace_id: int) -> list[Token]:
        rows = await self._rows(
            f"{_FIND_TOKENS} WHERE t.workspace_id = %s ORDER BY t.id", (workspace_id,)
        )
        return [to_token(r) for r in rows]

    async def revoke_token(self, token_id: int) -> bool:
        async with self._tx() as conn:
            cur = await conn.execute(
                "UPDATE tokens SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                (time.time(), token_id),
            )
            return cur.rowcount == 1

    # counters ----------------------------------------------------------------

    async def create_counter(
        self, workspace_id: int, name: str, *, private: bool = False, description: str = ""
    ) -> Counter:
        params = {
            "workspace_id": workspace_id,
            "name": name,
            "description": description,
            "private": private,
            "now": time.time(),
            "node": self.node,
        }
        try:
            async with self._tx() as conn:
                cur = await conn.execute(_CREATE_COUNTER, params)
                row = await cur.fetchone()
                await self._check_quota(conn, workspace_id)
        except Conflict:
            raise Conflict(f"counter {name!r} already exists in this workspace") from None
        if row is None:
            raise StorageError(f"workspace {workspace_id} vanished")
        return to_counter(row)

    async def change_counter(self, counter_id: int, change: CounterChange) -> Counter | None:
        async with self._tx() as conn:
            lock = f"{counter_change.LOCK} FOR UPDATE"
            cur = await conn.execute(lock.encode(), (counter_id,))
            row = await cur.fetchone()
            if row is None:
                return None
            counter_change.check(row, change)
            update = counter_change.update(counter_id, change)
            if update is not None:
                await conn.execute(update[0].encode(), update[1])
            cur = await conn.execute(_READ_COUNTER_BY_ID, {"id": counter_id, "node": self.node})
            row = await cur.fetchone()
        return to_counter(row) if row else None

    async def ensure_counter(self, workspace_id: int, name: str) -> Counter:
        now = time.time()
        async with self._tx() as conn:
            # a racing insert of the same name makes this one wait for its commit, then
            # do nothing; the SELECT (a new snapshot under READ COMMITTED) then sees it
            cur = await conn.execute(
                "INSERT INTO counters (workspace_id, name, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (workspace_id, name) DO NOTHING",
                (workspace_id, name, now, now),
            )
            if cur.rowcount == 1:
                await self._check_quota(conn, workspace_id)
            cur = await conn.execute(
                f"SELECT {COUNTER_COLUMNS}, {_SEQ} FROM workspaces w "
                "JOIN counters c ON c.workspace_id = w.id "
                "WHERE c.workspace_id = %(workspace_id)s AND c.name = %(name)s",
                {"workspace_id": workspace_id, "name": name, "node": self.node},
            )
            row = await cur.fetchone()
        if row is None:
            raise StorageError(f"counter {name!r} vanished")
        return to_counter(row)

    async def ensure_counters(self, wanted: Sequence[tuple[int, str]]) -> list[Counter | Exception]:
        """One transaction of three statements whatever the number of names. The
        workspaces' count rows are locked first, in order: two nodes' batches then never
        wait for each other's names (each waits for the other's whole batch instead), and
        the count read with the lock stays right until the commit."""
        now = time.time()
        spaces = sorted({w for w, _ in wanted})
        async with self._tx() as conn:
            cur = await conn.execute(_LOCK_COUNTS, (self.counter_quota, spaces))
            quotas = {int(r[0]): [int(r[1]), int(r[2] or 0)] for r in await cur.fetchall()}
            there = [(w, n) for w, n in wanted if w in quotas]  # not of a deleted workspace
            cur = await conn.execute(
                _INSERT_COUNTERS,
                {"now": now, "ws": [w for w, _ in there], "names": [n for _, n in there]},
            )
            made = {(int(r[1]), r[2]): int(r[0]) for r in await cur.fetchall()}
            refused: dict[tuple[int, str], Exception] = {}
            for key in wanted:  # in the order asked: the last ones past a quota are refused
                if key not in made:
                    continue
                known = quotas[key[0]]
                known[0] += 1
                try:
                    check_quota(known)
                except QuotaReached as exc:
                    known[0] -= 1
                    refused[key] = exc
            if refused:
                gone = [made.pop(k) for k in refused]
                await conn.execute("DELETE FROM counters WHERE id = ANY(%s)", (gone,))
            cur = await conn.execute(
                _READ_NAMED,
                {"node": self.node, "spaces": spaces, "names": sorted({n for _, n in wanted})},
            )
            rows = {(int(r[1]), r[3]): r for r in await cur.fetchall()}
        out: list[Counter | Exception] = []
        for key in wanted:
            row = rows.get(key)
            if key in refused:
                out.append(refused[key])
            elif row is None:
                out.append(StorageError(f"counter {key[1]!r} vanished"))
            else:
                out.append(to_counter(row))
        return out

    def _indexed(self, workspace_id: int, search: str) -> tuple[str, str, list[Any]] | None:
        if len(search) < 3:
            return None
        return (
            "counters c",
            "c.id IN (SELECT n.id FROM counter_names n WHERE n.workspace_id = %s "
            "AND n.name ILIKE %s ESCAPE '\\')",
            [workspace_id, like_pattern(search)],
        )

    async def _check_quota(self, conn: Connection, workspace_id: int) -> None:
        """After a counter's insert, in its transaction: QuotaReached rolls it back."""
        cur = await conn.execute(QUOTA.encode(), (self.counter_quota, workspace_id))
        check_quota(await cur.fetchone())

    async def read_counter(self, workspace_slug: str, name: str) -> Counter | None:
        row = await self._row(
            _READ_COUNTER, {"slug": workspace_slug, "name": name, "node": self.node}
        )
        return to_counter(row) if row else None

    async def read_counts(self, counter_id: int) -> tuple[int, int, float, int] | None:
        row = await self._counts.get(counter_id)
        if row is None:
            return None
        totals = _totals(row)
        return totals.up_count, totals.down_count, totals.updated_at, int(_text(row[4]))

    async def list_counters(self, workspace_id: int) -> list[Counter]:
        return [to_counter(r) for r in await self._rows(_LIST_COUNTERS, (workspace_id,))]

    async def count_counters(self, workspace_id: int) -> int:
        row = await self._row(
            "SELECT count(*) FROM counters WHERE workspace_id = %s", (workspace_id,)
        )
        return int(row[0]) if row else 0

    async def list_counters_after(
        self, workspace_id: int, after_id: int, limit: int
    ) -> list[Counter]:
        rows = await self._rows(
            f"SELECT {COUNTER_COLUMNS} FROM workspaces w JOIN counters c "
            "ON c.workspace_id = w.id WHERE w.id = %s AND c.id > %s ORDER BY c.id LIMIT %s",
            (workspace_id, after_id, limit),
        )
        return [to_counter(r) for r in rows]

    async def read_buckets(self, counter_ids: list[int]) -> list[tuple[int, int, int, int]]:
        rows = await self._rows(
            "SELECT counter_id, hour, up, down FROM counter_hours "
            "WHERE counter_id = ANY(%s) ORDER BY counter_id, hour",
            (counter_ids,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def import_counters(self, workspace_id: int, records: list[CounterRecord]) -> list[str]:
        # a page at a time: one read of the counters and one of their buckets, then the
        # writes as pipelined batches; counters locked in name order (no deadlock between
        # two imports)
        names = sorted(r.name for r in records)
        async with self._tx() as conn:
            cur = await conn.execute(
                "SELECT name, id, description, private, up_count, down_count, created_at, "
                "updated_at, min_value, max_value, origins, unique_window, unique_by_address "
                "FROM counters "
                "WHERE workspace_id = %s AND name = ANY(%s) "
                'ORDER BY name COLLATE "C" FOR UPDATE',
                (workspace_id, names),
            )
            have = {row[0]: row for row in await cur.fetchall()}
            new = [r for r in records if r.name not in have]
            if new:
                cur = await conn.execute(
                    "INSERT INTO counters (workspace_id, name, description, private, up_count, "
                    "down_count, created_at, updated_at) SELECT %s, * FROM unnest("
                    "%s::text[], %s::text[], %s::boolean[], %s::bigint[], %s::bigint[], "
                    "%s::float8[], %s::float8[]) RETURNING name, id",
                    (workspace_id, *_columns(new)),
                )
                ids = {row[0]: row[1] for row in await cur.fetchall()}
            else:
                ids = {}
            ids.update({name: row[1] for name, row in have.items()})
            cur = await conn.execute(
                "SELECT counter_id, hour, up, down FROM counter_hours "
                "WHERE counter_id = ANY(%s) ORDER BY counter_id, hour",
                ([row[1] for row in have.values()],),
            )
            buckets: dict[int, list[tuple[int, int, int]]] = {}
            for row in await cur.fetchall():
                buckets.setdefault(row[0], []).append((row[1], row[2], row[3]))
            outcomes, changed, rehour, reruled = [], [], [], []
            rewindowed: list[tuple[int, int, bool]] = []
            for r in records:
                old = have.get(r.name)
                if old is None:
                    outcome = "created"
                elif tuple(old[2:8]) != _values(r):
                    outcome = "changed"
                    changed.append(r)
                else:
                    outcome = "unchanged"
                counter_id = ids[r.name]
                if r.rules is not None:
                    rules = (r.rules.floor, r.rules.ceiling, join_origins(r.rules.origins))
                    if old is None or tuple(old[8:11]) != rules:
                        reruled.append((counter_id, *rules))
                        if outcome == "unchanged":
                            outcome = "changed"
                if r.unique is not None and ((0, False) if old is None else (old[11], old[12])) != (
                    r.unique,
                    r.unique_by_address,
                ):
                    rewindowed.append((counter_id, r.unique, r.unique_by_address))
                    if outcome == "unchanged":
                        outcome = "changed"
                if r.hours is not None and buckets.get(counter_id, []) != list(r.hours):
                    rehour.append((counter_id, r.hours))
                    if outcome == "unchanged":
                        outcome = "changed"
                outcomes.append(outcome)
            if changed:
                await conn.execute(
                    "UPDATE counters c SET description = v.d, private = v.p, up_count = v.u, "
                    "down_count = v.n, created_at = v.c, updated_at = v.a FROM unnest("
                    "%s::text[], %s::text[], %s::boolean[], %s::bigint[], %s::bigint[], "
                    "%s::float8[], %s::float8[]) AS v(name, d, p, u, n, c, a) "
                    "WHERE c.workspace_id = %s AND c.name = v.name",
                    (*_columns(changed), workspace_id),
                )
            if reruled:
                await conn.execute(
                    "UPDATE counters c SET min_value = v.lo, max_value = v.hi, origins = v.o "
                    "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[]) "
                    "AS v(id, lo, hi, o) WHERE c.id = v.id",
                    tuple(list(col) for col in zip(*reruled, strict=True)),
                )
            if rewindowed:
                await conn.execute(
                    "UPDATE counters c SET unique_window = v.w, unique_by_address = v.a "
                    "FROM unnest(%s::bigint[], %s::integer[], %s::boolean[]) AS v(id, w, a) "
                    "WHERE c.id = v.id",
                    tuple(list(col) for col in zip(*rewindowed, strict=True)),
                )
            if rehour:
                cur = await conn.execute(
                    "DELETE FROM counter_hours WHERE counter_id = ANY(%s) "
                    "RETURNING counter_id, hour, -up, -down",
                    ([cid for cid, _ in rehour],),
                )
                gone = await cur.fetchall()
                rows = [(cid, *h) for cid, hours in rehour for h in hours]
                await conn.execute(
                    "INSERT INTO counter_hours (counter_id, hour, up, down) "
                    "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[])",
                    tuple(list(col) for col in zip(*rows, strict=True)) if rows else ([],) * 4,
                )
                # the workspace's hourly totals: the old buckets out, the new ones in, last
                # (the lock order of migrations/postgresql/0016)
                both = [*gone, *rows]
                if both:
                    await conn.execute(
                        "SELECT tally_add_workspace_hours(%s::bigint[], %s::bigint[], "
                        "%s::bigint[], %s::bigint[])",
                        tuple(list(col) for col in zip(*both, strict=True)),
                    )
        return outcomes

    async def read_history(
        self, counter_id: int, since_hour: int = 0, before_hour: int = NO_END
    ) -> History:
        params = {"id": counter_id, "node": self.node, "since": since_hour, "before": before_hour}
        rows = await self._rows(_READ_HISTORY, params)
        buckets = [(r[0], r[1], r[2]) for r in rows if r[0] is not None]
        return History(buckets=buckets, seq=rows[0][3] if rows else 0)

    async def apply(self, changes: BatchChanges) -> dict[int, Totals]:
        ids = sorted(changes.counters)
        deltas = [changes.counters[i] for i in ids]
        keys = sorted(changes.hours)
        hours = [changes.hours[k] for k in keys]
        counters = (
            _array(ids),
            _array([d.up for d in deltas]),
            _array([d.down for d in deltas]),
            _bools([d.reset for d in deltas]),
            _array([d.updated_at for d in deltas]),
        )
        buckets = (
            _array([k[0] for k in keys]),
            _array([k[1] for k in keys]),
            _array([h[0] for h in hours]),
            _array([h[1] for h in hours]),
        )
        head = (self.node.encode(), b"%d" % changes.seq, repr(time.time()).encode())
        sent = time.monotonic()
        if all(d.plain for d in deltas):
            rows = await self._call(False, (*head, *counters, *buckets))
            if rows:
                self._saw_epoch(rows[0][4], sent)
            return {int(_text(row[0])): _totals(row) for row in rows}
        rules = (
            _array([d.base_up for d in deltas]),
            _array([d.base_down for d in deltas]),
            _array([d.check for d in deltas]),
            _array([d.record for d in deltas]),
        )
        rows = await self._call(True, (*head, *counters, *rules, *buckets))
        if rows:
            self._saw_epoch(rows[0][7], sent)
        out: dict[int, Totals] = {}
        for row in rows:
            counter_id = int(_text(row[0]))
            totals = out[counter_id] = _totals(row, row[4] == b"t")
            if changes.counters[counter_id].record >= 0 and row[5] is not None:
                totals.replaced = (int(_text(row[5])), int(_text(row[6])))
        return out

    async def _call(self, ops: bool, params: tuple[bytes, ...]) -> list[Row]:
        """Run tally_apply (or tally_apply_ops) on the flusher's connection for it."""
        try:
            flusher = self._ops_flusher if ops else self._flusher
            if flusher is None or flusher.closed:
                conn = await self._connect()
                if ops:
                    flusher = PreparedCall(conn, b"tally_apply_ops", _APPLY_OPS, self.call_timeout)
                    self._ops_flusher = flusher
                else:
                    flusher = PreparedCall(conn, b"tally_apply", _APPLY, self.call_timeout)
                    self._flusher = flusher
            rows = await flusher(params)
        except psycopg.Error as exc:
            await self._drop_flusher()
            raise StorageError(f"postgresql: {exc}") from exc
        except StorageError:
            await self._drop_flusher()
            raise
        return rows

    async def settle(self, changes: BatchChanges) -> dict[int, Totals] | None:
        # On a new connection, in one transaction: lock this node's row, which waits for
        # a tally_apply still running (the server ends it within its statement_timeout,
        # or when its commit is flushed); then move the seq past the batch, so a call
        # that reaches the server even later changes nothing. The fence is marked in
        # tally_meta: a settle whose own answer was lost finds its mark next time.
        ids = sorted(changes.counters)
        fence = f"fence:{self.node}"
        try:
            conn = await self._connect()
        except psycopg.Error as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        try:
            async with asyncio.timeout(self.call_timeout * 2), conn.transaction():
                await conn.execute(
                    "INSERT INTO node_seq (node, seq, updated_at) VALUES (%s, 0, %s) "
                    "ON CONFLICT (node) DO NOTHING",
                    (self.node, time.time()),
                )
                cur = await conn.execute(
                    "SELECT s.seq, m.value FROM node_seq s "
                    "LEFT JOIN tally_meta m ON m.key = %s WHERE s.node = %s FOR UPDATE OF s",
                    (fence, self.node),
                )
                row = await cur.fetchone()
                assert row is not None  # inserted above
                seq, fenced = int(row[0]), row[1]
                applied = seq >= changes.seq and fenced != str(changes.seq)
                if not applied and seq < changes.seq:
                    await conn.execute(
                        "UPDATE node_seq SET seq = %s WHERE node = %s", (changes.seq, self.node)
                    )
                    await conn.execute(
                        "INSERT INTO tally_meta (key, value) VALUES (%s, %s) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (fence, str(changes.seq)),
                    )
                # checked changes as they were decided (tally_apply_ops, 0006)
                cur = await conn.execute(
                    "SELECT c.id, c.up_count, c.down_count, c.updated_at, "
                    "s.refused_seq = %s AND c.id = ANY(s.refused) "
                    "FROM counters c, node_seq s WHERE c.id = ANY(%s) AND s.node = %s",
                    (changes.seq, ids, self.node),
                )
                rows = await cur.fetchall()
        except TimeoutError:
            raise StorageError(f"postgresql: settling batch {changes.seq} timed out") from None
        except psycopg.Error as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        finally:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
        if not applied:
            return None
        return {int(r[0]): Totals(int(r[1]), int(r[2]), float(r[3]), bool(r[4])) for r in rows}

    async def _drop_flusher(self) -> None:
        """Forget the flusher's connections (the next batch opens a new one)."""
        for flusher in (self._flusher, self._ops_flusher):
            if flusher is not None:
                await flusher.close()
        self._flusher = self._ops_flusher = None
