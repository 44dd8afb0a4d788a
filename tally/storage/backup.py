"""Backups of an embedded (SQLite) database: `backup` copies a live database, `restore`
puts a copy back.

`backup` uses SQLite's online backup API in one step: it reads the whole database
inside one read transaction, so the copy is the database as of one instant (every
commit before it, none after), while the server goes on counting (WAL mode: a reader
never blocks the writer). The copy goes to a temporary file beside the destination,
is checked (`PRAGMA integrity_check`), then renamed into place, so PATH is either the
old file or a complete new copy.

`restore` checks a copy the same way and writes it over a database with the backup API
(which respects the database's locks and its WAL). Stop the server of that database
first: a running server would keep serving from its caches and its batch sequence, so
`restore` refuses while one holds the database's server lock (tally.storage.server_lock).

PostgreSQL databases are backed up with pg_dump and restored with pg_restore
(docs/deploying.md).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from tally.errors import StorageError
from tally.storage import server_lock
from tally.storage.sqlite import SQLiteStore


def sqlite_path(database_url: str) -> Path:
    """The file of a sqlite:/// URL; StorageError for any other database."""
    scheme = database_url.split(":", 1)[0].lower()
    if scheme != "sqlite":
        raise StorageError(
            f"tally backup and restore copy SQLite databases; for {scheme}, use pg_dump and "
            "pg_restore (docs/deploying.md, Backups)"
        )
    return SQLiteStore.from_url(database_url).path


def _check(conn: sqlite3.Connection, what: str) -> int:
    """integrity_check passes and the file is a Tally database; its schema version."""
    result = conn.execute("PRAGMA integrity_check").fetchall()
    if result != [("ok",)]:
        raise StorageError(f"{what} is damaged: {result[:3]}")
    try:
        row = conn.execute("SELECT value FROM tally_meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError:
        row = None
    if row is None:
        raise StorageError(f"{what} is not a Tally database")
    return int(row[0])


def backup(database_url: str, destination: Path, *, overwrite: bool = False) -> int:
    """Copy the live database to `destination`; its schema version."""
    source_path = sqlite_path(database_url)
    if not source_path.exists():
        raise StorageError(f"no database at {source_path}")
    if destination.exists() and not overwrite:
        raise StorageError(f"{destination} exists (use --force to replace it)")
    partial = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    try:
        with (
            contextlib.closing(sqlite3.connect(source_path, timeout=10.0)) as src,
            contextlib.closing(sqlite3.connect(partial)) as dst,
        ):
            src.backup(dst)  # pages=-1: one step, one snapshot
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            version = _check(dst, f"the copy of {source_path}")
        os.replace(partial, destination)
    except sqlite3.Error as exc:
        raise StorageError(f"backup of {source_path} failed: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return version


def restore(copy: Path, database_url: str, *, overwrite: bool = False) -> int:
    """Write the backup `copy` over the database of `database_url`; its schema version.
    The database's servers must be stopped."""
    target = sqlite_path(database_url)
    running = server_lock.holder(target)
    if running is not None:
        raise StorageError(f"a Tally server ({running}) is serving {target}: stop it first")
    if not copy.is_file():
        raise StorageError(f"no backup at {copy}")
    if target.exists() and target.stat().st_size and not overwrite:
        raise StorageError(f"{target} exists (stop its servers, then use --force to replace it)")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{copy}?mode=ro", uri=True)) as src:
            version = _check(src, str(copy))
            with contextlib.closing(sqlite3.connect(target, timeout=10.0)) as dst:
                src.backup(dst)
                _check(dst, f"{target} after the restore")
    except sqlite3.Error as exc:
        raise StorageError(f"restore into {target} failed: {exc}") from exc
    return version
