"""The lock a server holds on its SQLite database (tally.storage.server_lock), in-process:
flock conflicts between two open files of one process as between two processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tally.errors import StorageError
from tally.storage.server_lock import DatabaseInUse, ServerLock, holder, lock_path


def test_one_holder_at_a_time(tmp_path: Path) -> None:
    """The first takes the lock and writes its pid and address; the second is refused
    naming them; after the release the file is empty and the lock free again."""
    db = tmp_path / "tally.db"
    assert holder(db) is None  # no file yet
    first = ServerLock.acquire(db, "http://127.0.0.1:8000")
    me = f"pid {os.getpid()}, http://127.0.0.1:8000"
    assert (tmp_path / "tally.db.lock").read_text() == me + "\n"
    assert holder(db) == me
    with pytest.raises(DatabaseInUse, match=f"another Tally server \\({me}\\) is serving"):
        ServerLock.acquire(db, "http://127.0.0.1:9000")
    first.release()
    first.release()  # twice is fine
    assert (tmp_path / "tally.db.lock").read_text() == ""
    assert holder(db) is None
    ServerLock.acquire(db, "http://127.0.0.1:9000").release()


def test_a_stale_file_is_taken_over(tmp_path: Path) -> None:
    """A file a killed server left (its pid still in it, no lock held) is no obstacle."""
    db = tmp_path / "tally.db"
    lock_path(db).write_text("pid 999999, http://127.0.0.1:8000\n")
    assert holder(db) is None
    lock = ServerLock.acquire(db, "http://127.0.0.1:8001")
    assert lock_path(db).read_text() == f"pid {os.getpid()}, http://127.0.0.1:8001\n"
    lock.release()


def test_a_missing_directory_is_a_storage_error(tmp_path: Path) -> None:
    """A database in a directory that does not exist: a StorageError (one line)."""
    with pytest.raises(StorageError, match=r"cannot open .*tally\.db\.lock"):
        ServerLock.acquire(tmp_path / "nope" / "tally.db", "http://127.0.0.1:8000")
