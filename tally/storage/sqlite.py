"""The embedded default: one SQLite file in WAL mode.

All writes go through one writer connection (one transaction per call), so they never
contend for the database lock. They run on a writer thread, but for a batch of counts
while its commits are quick: that commits on the event loop's own thread (see
`InlineCommits`). The API's own reads (a counter, its counts, a token: primary-key and
unique-key lookups) run on the caller's thread (the event loop) on a second connection:
they cost microseconds, less than a hop to a thread would. Every other read (the
dashboard's pages and lists, exports, a counter's history for stats) runs on a small pool
of reader threads, each with its own connection (`_off_loop`), so that a slow one never
stalls the loop. WAL gives every read statement a consistent snapshot.

URL: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``; the query
``?synchronous=normal`` trades the fsync per commit for speed (a process crash still
loses nothing; a power cut may lose the last commits). The default is ``full``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson

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
from tally.storage.dashboard import QUOTA, DashboardTables, Params, Statement, check_quota
from tally.storage.rows import (
    COUNTER_COLUMNS,
    TOKEN_COLUMNS,
    WORKSPACE_COLUMNS,
    join_origins,
    to_counter,
    to_token,
    to_workspace,
)

T = TypeVar("T")
NODE_IDLE_DAYS = 7
# how long a write waits for another process's lock on the database (ms)
BUSY_TIMEOUT_MS = 10_000
# reader threads (and connections) for the reads kept off the event loop: they bound how
# many run at once; more wait in the pool's queue
READER_THREADS = 2

_READ_COUNTER = f"""
SELECT {COUNTER_COLUMNS}, COALESCE((SELECT seq FROM node_seq WHERE node = ?), 0)
FROM workspaces w JOIN counters c ON c.workspace_id = w.id
WHERE w.slug = ? AND c.name = ?
"""
_READ_COUNTER_BY_ID = f"""
SELECT {COUNTER_COLUMNS}, COALESCE((SELECT seq FROM node_seq WHERE node = ?), 0)
FROM workspaces w JOIN counters c ON c.workspace_id = w.id
WHERE c.id = ?
"""
# new names go into the search index in bulk, with a creation batch at most this often
# (seconds), at most INDEX_CHUNK of them per statement (migration 0012)
INDEX_EVERY = 1.0
INDEX_CHUNK = 50_000
_READ_COUNTERS_BY_IDS = f"""
SELECT {COUNTER_COLUMNS}, COALESCE((SELECT seq FROM node_seq WHERE node = ?), 0)
FROM workspaces w JOIN counters c ON c.workspace_id = w.id
WHERE c.id IN (SELECT value FROM json_each(?))
"""
_READ_COUNTS = """
SELECT up_count, down_count, updated_at, COALESCE((SELECT seq FROM node_seq WHERE node = ?), 0)
FROM counters WHERE id = ?
"""
# A batch is applied in a handful of statements whatever its size, its rows passed as
# JSON arrays: the sqlite3 module releases the GIL around every step of a statement, and
# a writer thread that takes the GIL back thousands of times per batch would queue behind
# the busy event loop each time (the convoy effect); one step per statement does not.
_APPLY_COUNTERS = """
UPDATE counters SET
    up_count = CASE WHEN v.reset THEN 0 ELSE counters.up_count END + v.up,
    down_count = CASE WHEN v.reset THEN 0 ELSE counters.down_count END + v.down,
    updated_at = MAX(counters.updated_at, v.at)
FROM (
    SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS up,
           json_extract(value, '$[2]') AS down, json_extract(value, '$[3]') AS reset,
           json_extract(value, '$[4]') AS at
    FROM json_each(?)
) AS v
WHERE counters.id = v.id
"""
# only for counters that still exist: a change acknowledged before its counter was
# deleted must not leave a bucket that nothing would ever delete (one writer: nothing
# deletes a counter between this check and the commit)
_APPLY_HOURS = """
INSERT INTO counter_hours (counter_id, hour, up, down)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
       json_extract(value, '$[2]'), json_extract(value, '$[3]')
FROM json_each(?)
WHERE EXISTS (SELECT 1 FROM counters c WHERE c.id = json_extract(value, '$[0]'))
ON CONFLICT (counter_id, hour) DO UPDATE SET up = up + excluded.up, down = down + excluded.down
"""
# the same buckets summed per workspace and hour into its rollup (migrations/sqlite/0013):
# one row per workspace and hour of the batch, however many counts and counters
_APPLY_WORKSPACE_HOURS = """
INSERT INTO workspace_hours (workspace_id, hour, up, down)
SELECT c.workspace_id, value ->> 1 AS hour, SUM(value ->> 2), SUM(value ->> 3)
FROM json_each(?) JOIN counters c ON c.id = value ->> 0
WHERE true
GROUP BY c.workspace_id, hour
ON CONFLICT (workspace_id, hour) DO UPDATE SET up = up + excluded.up, down = down + excluded.down
"""
_TOTALS = """
-- updated_at as text: JSON numbers keep 15 digits, a REAL needs 17 to round-trip
SELECT json_group_array(json_array(id, up_count, down_count, printf('%!.17g', updated_at)))
FROM counters
WHERE id IN (SELECT value FROM json_each(?))
"""
_SET_SEQ = """
INSERT INTO node_seq (node, seq, updated_at) VALUES (?, ?, ?)
ON CONFLICT (node) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at
"""


class InlineCommits:
    """Whether a batch of counts commits on the event loop's own thread.

    Handing a batch to the writer thread and taking its answer back costs more than the
    commit itself where an fsync is quick: the thread must be woken and scheduled on a
    core the event loop and the HTTP server are busy with, and must win the GIL back
    after every statement. Measured on a 2-core machine, one hot counter, 64
    connections: the thread's round trip added about 0.4 ms queueing and doubled the
    batch's own time (0.56 ms against 0.24 ms on the loop's thread), and commit mode
    answered 24,400 ups/s through the thread against 39,100 inline.

    Inline, the loop waits for the commit; so only small batches go inline (`max_rows`
    rows written: counters and hourly buckets), and only while the commits measured
    there stay under `limit` on average: a slow disk (a network volume, a busy one)
    sends batches back to the writer thread, where the loop keeps serving while the
    disk works. From there one batch a `probe_every` seconds tries the loop's thread
    again, so a disk that recovered is noticed. The limit, 1 ms, is about what the
    round trip through the thread costs: above it the thread's overlap of the commit
    with the loop's work wins."""

    __slots__ = (
        "_probe_at",
        "average",
        "inline",
        "limit",
        "max_rows",
        "probe_every",
        "threaded",
    )

    def __init__(self, limit: float = 0.001, max_rows: int = 512, probe_every: float = 1.0) -> None:
        self.limit = limit  # seconds: a higher average sends batches to the thread
        self.max_rows = max_rows  # a bigger batch always goes to the thread
        self.probe_every = probe_every
        # of the commits on the loop's thread: an exponential average over about the last
        # 20, so the odd slow one (a WAL checkpoint: up to 3.4 ms among 20,000 commits of
        # 250 µs median, 554 µs p99) does not move it over the limit, a slow disk does
        self.average = 0.0
        self.inline = 0  # batches committed on the loop's thread
        self.threaded = 0  # and on the writer thread
        self._probe_at = 0.0

    def wanted(self, rows: int, now: float) -> bool:
        """A batch writing `rows` rows may commit inline at monotonic time `now`."""
        if rows > self.max_rows:
            return False
        return self.average <= self.limit or now >= self._probe_at

    def took(self, seconds: float, now: float) -> None:
        """A commit on the loop's thread took `seconds`."""
        if self.average > self.limit:  # a probe: judge the disk afresh by it
            self.average = seconds
        else:
            self.average += (seconds - self.average) * 0.05
        if self.average > self.limit:
            self._probe_at = now + self.probe_every


class _WriterBusy(Exception):
    """The writer connection cannot be had without waiting."""


class SQLiteStore(DashboardTables):
    """Store on one SQLite file. Owns the tables of `migrations/sqlite/`."""

    _then = "CROSS JOIN"  # the overview's range of hours read first (storage/overview.py)

    dialect = "sqlite"
    # a commit is cheap next to the Python work of the requests it carries: lingering
    # only delays them (measured: up-commit 20,300 against 23,300 req/s with 1 ms)
    commit_linger = 0.0

    def __init__(self, path: str | Path, *, node: str = "local", synchronous: str = "full"):
        self.path = Path(path)
        self.node = node
        if synchronous.lower() not in ("full", "normal", "extra"):
            raise ValueError("synchronous must be full, normal or extra")
        self.synchronous = synchronous.upper()
        self._reader: sqlite3.Connection | None = None  # the event loop's
        self._readers = ThreadPoolExecutor(
            max_workers=READER_THREADS, thread_name_prefix="tally-sqlite-reader"
        )
        self._reader_local = threading.local()  # each reader thread's connection
        self._reader_conns: list[sqlite3.Connection] = []  # all of them, to close
        self._reader_conns_lock = threading.Lock()
        self._writer_conn: sqlite3.Connection | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tally-sqlite-writer")
        # the writer connection, used by one thread at a time: the writer thread, or the
        # event loop's for a batch (which never waits for it: see _write_inline)
        self._writer_lock = threading.Lock()
        self.inline = InlineCommits()
        self._closed = False
        # settings_known: bumped after every write of this process but a batch's counts,
        # and when the writer finds that another process committed (PRAGMA data_version
        # of the writer's connection changes only then), checked with every write
        self._settings = (0, 0.0)  # (epoch, since): one object, read without a lock
        self._data_version: int | None = None
        self._index_at = 0.0  # monotonic: when a creation batch next indexes the new names

    @classmethod
    def from_url(cls, url: str, node: str = "local") -> SQLiteStore:
        parts = urlsplit(url)
        raw = url.split("://", 1)[1] if "://" in url else url.split(":", 1)[1]
        raw = raw.split("?", 1)[0]
        path = raw[1:] if raw.startswith("/") else raw  # sqlite:///x -> "x", ////x -> "/x"
        if not path:
            raise ValueError("the sqlite URL needs a file path: sqlite:///./tally.db")
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return cls(path, node=node, synchronous=options.get("synchronous", "full"))

    # connections -------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        for attempt in range(50):  # two processes creating the file at once race here
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.02)
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return conn

    async def open(self) -> None:
        if sqlite3.sqlite_version_info < (3, 35, 0):
            raise StorageError(
                f"SQLite {sqlite3.sqlite_version} is too old: Tally needs 3.35 or newer"
            )
        if self.path.parent and not self.path.parent.exists():
            raise StorageError(f"directory {self.path.parent} does not exist")
        await self._write(self._open_writer)
        self._reader = self._connect()
        self._reader.execute("PRAGMA query_only = ON")

    def _open_writer(self, conn: sqlite3.Connection | None) -> None:
        del conn  # none yet: this call makes it, on the writer thread
        self._writer_conn = self._connect()
        self._tx(self._migrate)(self._writer_conn)
        # names inserted while no server ran (bulk loads, an older server): index them now
        bulk = "SELECT 1 FROM sqlite_master WHERE name = 'names_indexed'"
        while self._writer_conn.execute(bulk).fetchone() and self._tx(_index_names)(
            self._writer_conn
        ):
            pass

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Apply every migration newer than the stored schema_version (in one transaction)."""
        conn.execute(
            "CREATE TABLE IF NOT EXISTS tally_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        row = conn.execute("SELECT value FROM tally_meta WHERE key = 'schema_version'").fetchone()
        current = int(row[0]) if row else 0
        for migration in migrations.load(self.dialect):
            if migration.version > current:
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                current = migration.version
        conn.execute(
            "INSERT INTO tally_meta (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(current),),
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def shut(conn: sqlite3.Connection | None) -> None:
            if conn is not None:
                conn.close()

        try:
            await self._write(shut)
        finally:
            self._writer.shutdown(wait=True)
            self._readers.shutdown(wait=True)
            with self._reader_conns_lock:
                for conn in self._reader_conns:
                    conn.close()
                self._reader_conns.clear()
            if self._reader is not None:
                self._reader.close()

    def settings_known(self) -> tuple[int, float] | None:
        return self._settings

    def _watch(self, conn: sqlite3.Connection | None, settings_kept: bool) -> None:
        """After a write, on its thread: bump the settings epoch unless the write kept
        every setting, or if another process committed since the last look."""
        since = time.monotonic()
        if conn is None:
            return
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            version = None  # unknown: assume a change
        epoch = self._settings[0]
        if not settings_kept or version is None or version != self._data_version:
            epoch += 1
        self._data_version = version
        self._settings = (epoch, since)

    async def _write(
        self,
        fn: Callable[[sqlite3.Connection | None], T],
        *,
        settings_kept: bool = False,
        inline: int | None = None,
    ) -> T:
        """Run `fn(writer_connection)` on the writer thread. `settings_kept`: the write
        changes nothing a counter lookup returns (counts, history, a token's last use;
        see settings_known). `inline`: the write is a
        batch of that many rows, which may run on the caller's thread instead (see
        InlineCommits)."""

        def run() -> T:
            with self._writer_lock:
                try:
                    return fn(self._writer_conn)
                finally:
                    self._watch(self._writer_conn, settings_kept)

        try:
            if inline is not None and self.inline.wanted(inline, time.monotonic()):
                with contextlib.suppress(_WriterBusy):
                    return self._write_inline(fn, settings_kept)
            self.inline.threaded += inline is not None
            return await asyncio.get_running_loop().run_in_executor(self._writer, run)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc):
                raise StorageError(f"sqlite: {exc}") from exc
            raise Conflict(str(exc)) from exc
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite: {exc}") from exc

    def _write_inline(self, fn: Callable[[sqlite3.Connection | None], T], settings_kept: bool) -> T:
        """Run `fn(writer_connection)` on this thread if that needs no waiting; raise
        _WriterBusy if it did not run, or stopped before committing, because the writer
        thread has the connection or another process has the database's write lock. The
        event loop never waits for either: the writer thread does."""
        conn = self._writer_conn
        if conn is None or not self._writer_lock.acquire(blocking=False):
            raise _WriterBusy()
        try:
            started = time.monotonic()
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                result = fn(conn)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                    raise _WriterBusy() from exc  # rolled back (see _tx): nothing written
                raise
            finally:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                self._watch(conn, settings_kept)
            self.inline.took(time.monotonic() - started, started)
            self.inline.inline += 1
            return result
        finally:
            self._writer_lock.release()

    def _read_now(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """A quick read (a key lookup) on the caller's thread, the event loop's."""
        if self._reader is None:
            raise StorageError("the store is not open")
        try:
            return self._reader.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite: {exc}") from exc

    def _reader_conn(self) -> sqlite3.Connection:
        """This reader thread's connection (made on its first read)."""
        conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            with self._reader_conns_lock:
                self._reader_conns.append(conn)
            self._reader_local.conn = conn
        return conn

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """A read on a reader thread (see _off_loop)."""
        try:
            return self._reader_conn().execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite: {exc}") from exc

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on a reader thread: the loop keeps serving while it runs."""
        if self._reader is None or self._closed:
            raise StorageError("the store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn, *args)

    def _tx(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> Callable[[sqlite3.Connection | None], T]:
        """Wrap `fn` in BEGIN IMMEDIATE ... COMMIT on the writer connection."""

        def run(conn: sqlite3.Connection | None) -> T:
            if conn is None:
                raise sqlite3.OperationalError("the store is not open")
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                # also when COMMIT itself failed (a full disk, an I/O error): SQLite may
                # keep the transaction open, and with it the write lock, so that every
                # later BEGIN fails. Roll back whatever is left; nothing was committed.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            return result

        return run

    async def _fetch(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return await self._off_loop(self._read, sql.replace("%s", "?"), params)

    async def _change(
        self, statements: Sequence[Statement], *, settings_kept: bool = False
    ) -> list[list[tuple[Any, ...]]]:
        def run(conn: sqlite3.Connection) -> list[list[tuple[Any, ...]]]:
            return [
                conn.execute(sql.replace("%s", "?"), tuple(params)).fetchall()
                for sql, params in statements
            ]

        return await self._write(self._tx(run), settings_kept=settings_kept)

    # meta --------------------------------------------------------------------

    async def schema_version(self) -> int:
        rows = self._read_now("SELECT value FROM tally_meta WHERE key = 'schema_version'")
        return int(rows[0][0]) if rows else 0

    async def claim_node(self) -> None:
        node = self.node

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO node_seq (node, seq, updated_at) VALUES (?, 0, ?)", (node, time.time())
            )

        try:
            await self._write(self._tx(run))
        except Conflict:
            raise Conflict(f"node name {node!r} is already in use") from None

    async def register_node(self) -> int:
        node = self.node

        def run(conn: sqlite3.Connection) -> int:
            conn.execute(
                "DELETE FROM node_seq WHERE updated_at < ? AND node <> ?",
                (time.time() - NODE_IDLE_DAYS * 86400, node),
            )
            row = conn.execute("SELECT seq FROM node_seq WHERE node = ?", (node,)).fetchone()
            return int(row[0]) if row else 0

        return await self._write(self._tx(run))

    async def heartbeat(self, live_within: float) -> int:
        node = self.node

        def run(conn: sqlite3.Connection) -> int:
            now = time.time()
            conn.execute("UPDATE node_seq SET updated_at = ? WHERE node = ?", (now, node))
            row = conn.execute(
                "SELECT count(*) FROM node_seq WHERE updated_at >= ? AND node <> ?",
                (now - live_within, node),
            ).fetchone()
            return 1 + int(row[0])

        return await self._write(self._tx(run))

    async def meta_get_or_set(self, key: str, default: str) -> str:
        def run(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO tally_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (key, default),
            )
            return str(
                conn.execute("SELECT value FROM tally_meta WHERE key = ?", (key,)).fetchone()[0]
            )

        return await self._write(self._tx(run))

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

        def run(conn: sqlite3.Connection) -> Workspace:
            row = conn.execute(
                "INSERT INTO workspaces (slug, name, created_at, v1_open, origins) "
                f"VALUES (?, ?, ?, ?, ?) RETURNING {WORKSPACE_COLUMNS}",
                (slug, name, now, int(v1_open), join_origins(origins)),
            ).fetchone()
            return to_workspace(row)

        try:
            return await self._write(self._tx(run))
        except Conflict:
            raise Conflict(f"workspace {slug!r} already exists") from None

    async def get_workspace(self, slug: str) -> Workspace | None:
        rows = self._read_now(f"SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE slug = ?", (slug,))
        return to_workspace(rows[0]) if rows else None

    async def list_workspaces(self) -> list[Workspace]:
        rows = await self._off_loop(
            self._read, f"SELECT {WORKSPACE_COLUMNS} FROM workspaces ORDER BY slug"
        )
        return [to_workspace(r) for r in rows]

    async def set_workspace_rules(
        self, workspace_id: int, *, v1_open: bool, origins: tuple[str, ...]
    ) -> Workspace | None:
        def run(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = conn.execute(
                f"UPDATE workspaces SET v1_open = ?, origins = ? WHERE id = ? "
                f"RETURNING {WORKSPACE_COLUMNS}",
                (int(v1_open), join_origins(origins), workspace_id),
            ).fetchone()
            return row

        row = await self._write(self._tx(run))
        return to_workspace(row) if row else None

    async def set_page_counting(
        self, workspace_id: int, *, page_views: bool, honour_dnt: bool
    ) -> Workspace | None:
        def run(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = conn.execute(
                f"UPDATE workspaces SET page_views = ?, honour_dnt = ? WHERE id = ? "
                f"RETURNING {WORKSPACE_COLUMNS}",
                (int(page_views), int(honour_dnt), workspace_id),
            ).fetchone()
            return row

        row = await self._write(self._tx(run))
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
        now = time.time()

        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "INSERT INTO tokens (workspace_id, name, prefix, hash, permission, created_at, "
                "expires_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    workspace_id,
                    name,
                    prefix,
                    token_hash,
                    int(permission),
                    now,
                    expires_at,
                    created_by,
                ),
            ).fetchone()
            return int(row[0])

        token_id = await self._write(self._tx(run))
        rows = self._read_now(
            f"SELECT {TOKEN_COLUMNS} FROM tokens t JOIN workspaces w ON w.id = t.workspace_id "
            "WHERE t.id = ?",
            (token_id,),
        )
        return to_token(rows[0])

    async def find_token(self, token_hash: str) -> Token | None:
        rows = self._read_now(
            f"SELECT {TOKEN_COLUMNS} FROM tokens t JOIN workspaces w ON w.id = t.workspace_id "
            "WHERE t.hash = ?",
            (token_hash,),
        )
        return to_token(rows[0]) if rows else None

    async def list_tokens(self, workspace_id: int) -> list[Token]:
        rows = await self._off_loop(
            self._read,
            f"SELECT {TOKEN_COLUMNS} FROM tokens t JOIN workspaces w ON w.id = t.workspace_id "
            "WHERE t.workspace_id = ? ORDER BY t.id",
            (workspace_id,),
        )
        return [to_token(r) for r in rows]

    async def revoke_token(self, token_id: int) -> bool:
        now = time.time()

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, token_id),
            )
            return cur.rowcount == 1

        return await self._write(self._tx(run))

    # counters ----------------------------------------------------------------

    async def create_counter(
        self, workspace_id: int, name: str, *, private: bool = False, description: str = ""
    ) -> Counter:
        now = time.time()

        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "INSERT INTO counters (workspace_id, name, description, private, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (workspace_id, name, description, int(private), now, now),
            ).fetchone()
            self._check_quota(conn, workspace_id)
            _index_names(conn)
            return int(row[0])

        try:
            counter_id = await self._write(self._tx(run))
        except Conflict:
            raise Conflict(f"counter {name!r} already exists in this workspace") from None
        return self._counter_by_id(counter_id)

    async def change_counter(self, counter_id: int, change: CounterChange) -> Counter | None:
        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(counter_change.LOCK.replace("%s", "?"), (counter_id,)).fetchone()
            if row is None:
                return False
            counter_change.check(row, change)
            update = counter_change.update(counter_id, change)
            if update is not None:
                conn.execute(update[0].replace("%s", "?"), update[1])
            return True

        if not await self._write(self._tx(run)):
            return None
        return self._counter_by_id(counter_id)

    async def ensure_counter(self, workspace_id: int, name: str) -> Counter:
        now = time.time()

        def run(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO counters (workspace_id, name, created_at, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (workspace_id, name) DO NOTHING",
                (workspace_id, name, now, now),
            )
            if cur.rowcount == 1:
                self._check_quota(conn, workspace_id)
                _index_names(conn)
            row = conn.execute(
                "SELECT id FROM counters WHERE workspace_id = ? AND name = ?", (workspace_id, name)
            ).fetchone()
            return int(row[0])

        return self._counter_by_id(await self._write(self._tx(run)))

    async def ensure_counters(self, wanted: Sequence[tuple[int, str]]) -> list[Counter | Exception]:
        now = time.time()

        def run(conn: sqlite3.Connection) -> tuple[list[int | Exception], list[tuple[Any, ...]]]:
            quotas: dict[int, list[int] | None] = {}  # workspace -> [counters, quota]
            ids = [_ensure_one(conn, quotas, self.counter_quota, w, n, now) for w, n in wanted]
            if time.monotonic() >= self._index_at:  # the search index, in bulk (see 0012)
                self._index_at = time.monotonic() + INDEX_EVERY
                _index_names(conn)
            found = orjson.dumps([i for i in ids if isinstance(i, int)])
            # read here, on the writer's thread, not on the event loop after the commit
            return ids, conn.execute(_READ_COUNTERS_BY_IDS, (self.node, found)).fetchall()

        # on the writer's thread always: a batch of names takes milliseconds (the search
        # index's trigrams), too long for the event loop, and kept out of the average by
        # which batches of counts commit inline (InlineCommits)
        ids, rows = await self._write(self._tx(run))
        by_id = {int(r[0]): to_counter(r) for r in rows}
        return [i if not isinstance(i, int) else by_id.get(i) or _vanished(i) for i in ids]

    def _indexed(self, workspace_id: int, search: str) -> tuple[str, str, list[Any]] | None:
        if len(search) < 3:
            return None
        phrase = '"' + search.replace('"', '""') + '"'  # the text itself, not a query
        # the index's matches and the names not indexed yet (the tail after `upto`, at
        # most about INDEX_EVERY seconds of new names; the LIKE of the search's WHERE
        # filters them); NOT INDEXED: SQLite looks these ids up by rowid, rather than
        # walking the workspace's counters by another index and testing each
        matches = (
            "c.id IN (SELECT rowid FROM counter_names WHERE counter_names MATCH %s "
            "UNION ALL SELECT id FROM counters WHERE id > (SELECT upto FROM names_indexed))"
        )
        return "counters c NOT INDEXED", matches, [phrase]

    def _check_quota(self, conn: sqlite3.Connection, workspace_id: int) -> None:
        """After a counter's insert, in its transaction: QuotaReached rolls it back."""
        sql = QUOTA.replace("%s", "?")
        check_quota(conn.execute(sql, (self.counter_quota, workspace_id)).fetchone())

    def _counter_by_id(self, counter_id: int) -> Counter:
        rows = self._read_now(_READ_COUNTER_BY_ID, (self.node, counter_id))
        if not rows:
            raise StorageError(f"counter {counter_id} vanished")
        return to_counter(rows[0])

    async def read_counter(self, workspace_slug: str, name: str) -> Counter | None:
        rows = self._read_now(_READ_COUNTER, (self.node, workspace_slug, name))
        return to_counter(rows[0]) if rows else None

    async def read_counts(self, counter_id: int) -> tuple[int, int, float, int] | None:
        rows = self._read_now(_READ_COUNTS, (self.node, counter_id))
        return rows[0] if rows else None

    async def list_counters(self, workspace_id: int) -> list[Counter]:
        rows = await self._off_loop(
            self._read,
            f"SELECT {COUNTER_COLUMNS} FROM workspaces w JOIN counters c "
            "ON c.workspace_id = w.id WHERE w.id = ? ORDER BY c.name",
            (workspace_id,),
        )
        return [to_counter(r) for r in rows]

    async def count_counters(self, workspace_id: int) -> int:
        rows = await self._off_loop(
            self._read, "SELECT count(*) FROM counters WHERE workspace_id = ?", (workspace_id,)
        )
        return int(rows[0][0])

    async def list_counters_after(
        self, workspace_id: int, after_id: int, limit: int
    ) -> list[Counter]:
        rows = await self._off_loop(
            self._read,
            f"SELECT {COUNTER_COLUMNS} FROM workspaces w JOIN counters c "
            # `+c.workspace_id`: walk the rowids from `after_id`, not the (workspace, name)
            # index, which would sort the whole workspace for every page
            "ON c.workspace_id = w.id WHERE +c.workspace_id = ? AND c.id > ? "
            "ORDER BY c.id LIMIT ?",
            (workspace_id, after_id, limit),
        )
        return [to_counter(r) for r in rows]

    async def read_buckets(self, counter_ids: list[int]) -> list[tuple[int, int, int, int]]:
        return await self._off_loop(
            self._read,
            "SELECT counter_id, hour, up, down FROM counter_hours "
            "WHERE counter_id IN (SELECT value FROM json_each(?)) ORDER BY counter_id, hour",
            (orjson.dumps(counter_ids),),
        )

    async def import_counters(self, workspace_id: int, records: list[CounterRecord]) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            done = [_import_one(conn, workspace_id, r) for r in records]
            while _index_names(conn):
                pass
            return done

        return await self._write(self._tx(run))

    async def read_history(
        self, counter_id: int, since_hour: int = 0, before_hour: int = NO_END
    ) -> History:
        return await self._off_loop(self._history, counter_id, since_hour, before_hour)

    def _history(self, counter_id: int, since_hour: int, before_hour: int) -> History:
        """read_history on a reader thread: the seq and the buckets of one snapshot."""
        try:
            conn = self._reader_conn()
            conn.execute("BEGIN")
            try:
                seq_row = conn.execute(
                    "SELECT seq FROM node_seq WHERE node = ?", (self.node,)
                ).fetchone()
                buckets = conn.execute(
                    "SELECT hour, up, down FROM counter_hours "
                    "WHERE counter_id = ? AND hour >= ? AND hour < ?",
                    (counter_id, since_hour, before_hour),
                ).fetchall()
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite: {exc}") from exc
        return History(buckets=buckets, seq=seq_row[0] if seq_row else 0)

    async def apply(self, changes: BatchChanges) -> dict[int, Totals]:
        node = self.node
        counters = changes.counters
        special = {cid for cid, d in counters.items() if not d.plain}
        rows = orjson.dumps(
            [
                (cid, d.up, d.down, d.reset, d.updated_at)
                for cid, d in counters.items()
                if cid not in special
            ]
        )
        hours = orjson.dumps(
            [(cid, h, ud[0], ud[1]) for (cid, h), ud in changes.hours.items() if cid not in special]
        )
        ids = orjson.dumps(list(counters))

        def run(conn: sqlite3.Connection) -> tuple[str, dict[int, tuple[int, int] | None]]:
            outcome: dict[int, tuple[int, int] | None] = {}  # refused: None
            done = conn.execute(
                "SELECT seq, refused_seq, refused FROM node_seq WHERE node = ?", (node,)
            ).fetchone()
            if done is None or done[0] < changes.seq:
                conn.execute(_APPLY_COUNTERS, (rows,))
                conn.execute(_APPLY_HOURS, (hours,))
                conn.execute(_APPLY_WORKSPACE_HOURS, (hours,))
                for cid in sorted(special):
                    outcome[cid] = _apply_special(conn, changes, cid)
                conn.execute(_SET_SEQ, (node, changes.seq, time.time()))
                refused = [cid for cid, replaced in outcome.items() if replaced is None]
                if refused:
                    conn.execute(
                        "UPDATE node_seq SET refused_seq = ?, refused = ? WHERE node = ?",
                        (changes.seq, orjson.dumps(refused).decode(), node),
                    )
            elif done[1] == changes.seq:  # a retry of a committed batch: as decided then
                outcome = dict.fromkeys(orjson.loads(done[2]))
            return str(conn.execute(_TOTALS, (ids,)).fetchone()[0]), outcome

        text, outcome = await self._write(
            self._tx(run), settings_kept=True, inline=len(counters) + len(changes.hours)
        )
        out: dict[int, Totals] = {}
        for t in orjson.loads(text):
            totals = out[t[0]] = Totals(t[1], t[2], float(t[3]))
            if t[0] in outcome:
                replaced = outcome[t[0]]
                totals.refused = replaced is None
                totals.replaced = replaced if counters[t[0]].record >= 0 else None
        return out

    async def settle(self, changes: BatchChanges) -> dict[int, Totals] | None:
        # The writer thread runs one transaction at a time, so nothing of this node is
        # still running here; the fence is kept for the contract (see Store.settle).
        node, seq, fence = self.node, changes.seq, f"fence:{self.node}"
        ids = orjson.dumps(list(changes.counters))

        def run(conn: sqlite3.Connection) -> tuple[str, list[int]] | None:
            conn.execute(
                "INSERT INTO node_seq (node, seq, updated_at) VALUES (?, 0, ?) "
                "ON CONFLICT (node) DO NOTHING",
                (node, time.time()),
            )
            done, refused_seq, refused = conn.execute(
                "SELECT seq, refused_seq, refused FROM node_seq WHERE node = ?", (node,)
            ).fetchone()
            mark = conn.execute("SELECT value FROM tally_meta WHERE key = ?", (fence,)).fetchone()
            if done >= seq and (mark is None or mark[0] != str(seq)):
                totals = str(conn.execute(_TOTALS, (ids,)).fetchone()[0])
                return totals, orjson.loads(refused) if refused_seq == seq else []
            if done < seq:
                conn.execute("UPDATE node_seq SET seq = ? WHERE node = ?", (seq, node))
                conn.execute(
                    "INSERT INTO tally_meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (fence, str(seq)),
                )
            return None

        settled = await self._write(self._tx(run), settings_kept=True)
        if settled is None:
            return None
        text, refused = settled
        return {t[0]: Totals(t[1], t[2], float(t[3]), t[0] in refused) for t in orjson.loads(text)}


def _ensure_one(
    conn: sqlite3.Connection,
    quotas: dict[int, list[int] | None],
    default_quota: int,
    workspace_id: int,
    name: str,
    now: float,
) -> int | Exception:
    """One name of `ensure_counters`, in its transaction: the counter's id, created if
    missing, or QuotaReached (then nothing is created). The workspace's count is read
    once per transaction and kept here for its later names: the transaction holds the
    database's write lock, so no one else creates meanwhile."""
    if workspace_id not in quotas:
        got = conn.execute(QUOTA.replace("%s", "?"), (default_quota, workspace_id)).fetchone()
        quotas[workspace_id] = None if got is None else [int(got[0]), int(got[1] or 0)]
    known = quotas[workspace_id]
    if known is None:  # deleted meanwhile: an insert would fail the whole transaction
        return StorageError(f"workspace {workspace_id} vanished")
    row = conn.execute(
        "INSERT INTO counters (workspace_id, name, created_at, updated_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (workspace_id, name) DO NOTHING RETURNING id",
        (workspace_id, name, now, now),
    ).fetchone()
    if row is None:  # it exists
        row = conn.execute(
            "SELECT id FROM counters WHERE workspace_id = ? AND name = ?", (workspace_id, name)
        ).fetchone()
        return int(row[0]) if row else StorageError(f"counter {name!r} vanished")
    counter_id = int(row[0])
    known[0] += 1
    try:
        check_quota(known)
    except QuotaReached as exc:
        conn.execute("DELETE FROM counters WHERE id = ?", (counter_id,))
        known[0] -= 1
        return exc
    return counter_id


def _index_names(conn: sqlite3.Connection, limit: int = INDEX_CHUNK) -> int:
    """Put the names after `names_indexed.upto` into the search index, `limit` at most,
    in one statement (migration 0012); how many it indexed."""
    upto = conn.execute("SELECT upto FROM names_indexed").fetchone()[0]
    last = conn.execute(
        "SELECT MAX(id), COUNT(*) FROM (SELECT id FROM counters WHERE id > ? ORDER BY id LIMIT ?)",
        (upto, limit),
    ).fetchone()
    if not last[1]:
        return 0
    conn.execute(
        "INSERT INTO counter_names (rowid, name) SELECT id, name FROM counters "
        "WHERE id > ? AND id <= ?",
        (upto, last[0]),
    )
    conn.execute("UPDATE names_indexed SET upto = ?", (last[0],))
    return int(last[1])


def _vanished(counter_id: int) -> StorageError:
    return StorageError(f"counter {counter_id} vanished")


_ADD_HOUR = """
INSERT INTO counter_hours (counter_id, hour, up, down) VALUES (?, ?, ?, ?)
ON CONFLICT (counter_id, hour) DO UPDATE SET up = up + excluded.up, down = down + excluded.down
"""
_ADD_WORKSPACE_HOUR = """
INSERT INTO workspace_hours (workspace_id, hour, up, down) VALUES (?, ?, ?, ?)
ON CONFLICT (workspace_id, hour) DO UPDATE SET up = up + excluded.up, down = down + excluded.down
"""


def _add_hour(
    conn: sqlite3.Connection, workspace_id: int, cid: int, hour: int, up: int, down: int
) -> None:
    """Add to a counter's bucket and to its workspace's total of that hour."""
    conn.execute(_ADD_HOUR, (cid, hour, up, down))
    conn.execute(_ADD_WORKSPACE_HOUR, (workspace_id, hour, up, down))


def _apply_special(
    conn: sqlite3.Connection, changes: BatchChanges, cid: int
) -> tuple[int, int] | None:
    """Apply a checked delta or a set, row by row: the totals it changed, or None if it
    was refused (a bound)."""
    delta = changes.counters[cid]
    row = conn.execute(
        "SELECT up_count, down_count, min_value, max_value, workspace_id FROM counters "
        "WHERE id = ?",
        (cid,),
    ).fetchone()
    if row is None:  # deleted meanwhile
        return (0, 0)
    old_up, old_down, floor, ceiling, workspace_id = row
    if delta.crosses(old_up, old_down, floor, ceiling):
        return None
    new_up, new_down = delta.totals_after(old_up, old_down)
    conn.execute(
        "UPDATE counters SET up_count = ?, down_count = ?, updated_at = MAX(updated_at, ?) "
        "WHERE id = ?",
        (new_up, new_down, delta.updated_at, cid),
    )
    for (hour_cid, hour), (up, down) in changes.hours.items():
        if hour_cid == cid:
            _add_hour(conn, workspace_id, cid, hour, up, down)
    if delta.record >= 0:
        _add_hour(
            conn,
            workspace_id,
            cid,
            delta.record,
            delta.base_up - old_up,
            delta.base_down - old_down,
        )
    return old_up, old_down


def _import_one(conn: sqlite3.Connection, workspace_id: int, r: CounterRecord) -> str:
    """One record of `import_counters`, on the writer's transaction."""
    values = (r.description, int(r.private), r.up_count, r.down_count, r.created_at, r.updated_at)
    row = conn.execute(
        "SELECT id, description, private, up_count, down_count, created_at, updated_at "
        "FROM counters WHERE workspace_id = ? AND name = ?",
        (workspace_id, r.name),
    ).fetchone()
    if row is None:
        outcome = "created"
        counter_id = conn.execute(
            "INSERT INTO counters (workspace_id, name, description, private, up_count, "
            "down_count, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (workspace_id, r.name, *values),
        ).fetchone()[0]
    else:
        counter_id = row[0]
        outcome = "unchanged" if tuple(row[1:]) == values else "changed"
        if outcome == "changed":
            conn.execute(
                "UPDATE counters SET description = ?, private = ?, up_count = ?, "
                "down_count = ?, created_at = ?, updated_at = ? WHERE id = ?",
                (*values, counter_id),
            )
    if r.rules is not None:
        rules = (r.rules.floor, r.rules.ceiling, join_origins(r.rules.origins))
        stored = conn.execute(
            "SELECT min_value, max_value, origins FROM counters WHERE id = ?", (counter_id,)
        ).fetchone()
        if tuple(stored) != rules:
            conn.execute(
                "UPDATE counters SET min_value = ?, max_value = ?, origins = ? WHERE id = ?",
                (*rules, counter_id),
            )
            if outcome == "unchanged":
                outcome = "changed"
    if r.unique is not None:
        unique = (r.unique, int(r.unique_by_address))
        stored = conn.execute(
            "SELECT unique_window, unique_by_address FROM counters WHERE id = ?", (counter_id,)
        ).fetchone()
        if tuple(stored) != unique:
            conn.execute(
                "UPDATE counters SET unique_window = ?, unique_by_address = ? WHERE id = ?",
                (*unique, counter_id),
            )
            if outcome == "unchanged":
                outcome = "changed"
    if r.hours is not None:
        have = conn.execute(
            "SELECT hour, up, down FROM counter_hours WHERE counter_id = ? ORDER BY hour",
            (counter_id,),
        ).fetchall()
        if have != list(r.hours):
            conn.execute("DELETE FROM counter_hours WHERE counter_id = ?", (counter_id,))
            conn.executemany(
                "INSERT INTO counter_hours (counter_id, hour, up, down) VALUES (?, ?, ?, ?)",
                [(counter_id, *h) for h in r.hours],
            )
            # the workspace's totals: the old buckets out, the new ones in
            conn.executemany(
                _ADD_WORKSPACE_HOUR,
                [(workspace_id, h, -up, -down) for h, up, down in have]
                + [(workspace_id, *h) for h in r.hours],
            )
            if outcome == "unchanged":
                outcome = "changed"
    return outcome


def _statements(script: str) -> list[str]:
    """Split a migration script into statements; a CREATE TRIGGER's body (its inner `;`)
    runs to its END."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    out: list[str] = []
    for part in "\n".join(lines).split(";"):
        if (
            out
            and out[-1].upper().startswith("CREATE TRIGGER")
            and not out[-1].upper().endswith("END")
        ):
            out[-1] = f"{out[-1]};{part}".strip()
        elif part.strip():
            out.append(part.strip())
    return out
