"""One server per SQLite database: the lock `tally serve` holds on `DATABASE.lock`.

A server on SQLite takes an advisory lock (flock) on the file beside its database (for
`tally.db`, `tally.db.lock`) for as long as it runs, and writes its pid and address
into it. A second server on the same database finds the lock held and refuses to start,
naming the first: two servers would each keep their own caches, rate limits and unique
visitors over one file. The kernel drops the lock when the process ends, however it
ends (SIGKILL, a crash), so a file left behind holds nothing and the next server takes
it over. The file is never deleted: a server deleting it while another opens it could
leave two servers each holding a lock of its own file.

The admin commands (workspace, token, counter, user, export, import, backup) do not
take the lock: they work beside a running server. `tally restore` does not run while
it is held (`holder`).

PostgreSQL deployments run many nodes on one database by design: no lock there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from tally.errors import StorageError


class DatabaseInUse(StorageError):
    """Another server holds the database's lock."""

    def __init__(self, database: Path, holder: str) -> None:
        super().__init__(
            f"another Tally server ({holder}) is serving {database}: stop it first, or "
            "give this one another database with --database (or TALLY_DATABASE_URL)"
        )
        self.holder = holder


def lock_path(database: Path) -> Path:
    """The lock file beside the database's real file (through any symlink, so that two
    paths of one file share one lock)."""
    database = database.resolve()
    return database.with_name(database.name + ".lock")


class ServerLock:
    """The lock of one database, held from `acquire` until `release` or the end of the
    process (also in granian's worker, which inherits it)."""

    def __init__(self, database: Path, fd: int) -> None:
        self.database = database
        self.fd: int | None = fd

    @classmethod
    def acquire(cls, database: Path, address: str) -> ServerLock:
        """Hold `database`'s lock and write `pid N, address` into it, or DatabaseInUse."""
        path = lock_path(database)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot open {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held_by = _read(fd)
            os.close(fd)
            raise DatabaseInUse(database.resolve(), held_by) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {address}\n".encode(), 0)
        return cls(database, fd)

    def release(self) -> None:
        """Empty the file and drop the lock (the file stays: see the module's note)."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def holder(database: Path) -> str | None:
    """Who holds `database`'s lock ("pid N, http://..."), or None if no server does."""
    try:
        fd = os.open(lock_path(database), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read(fd: int) -> str:
    """What the holder wrote; the file may be empty for a moment after its flock."""
    text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
    return text or "its pid not written yet"
