"""The embedded store when a transaction fails: at COMMIT, or on a full disk."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tally.errors import StorageError
from tally.models import BatchChanges, CounterDelta
from tally.storage.sqlite import SQLiteStore


@contextlib.contextmanager
def small_disk(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (needs root; else skipped, or failed in CI)."""
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        reason = f"cannot mount a tmpfs to fill ({done.stderr.strip() or 'not root'})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Write a file in `path` until the disk is full."""
    filler = path / "filler"
    # (suppress outermost: closing the file flushes what the last write left, and
    # that fails on the full disk too)
    with contextlib.suppress(OSError), open(filler, "wb") as f:
        while True:
            f.write(b"x" * 65536)
            f.flush()
    return filler


def many_hours(seq: int, counter_id: int, n: int) -> BatchChanges:
    """One counter's batch spread over `n` hours: enough pages to need new space."""
    return BatchChanges(
        seq=seq,
        counters={counter_id: CounterDelta(n, 0, False, 1.0)},
        hours={(counter_id, 400_000 + h): [1, 0] for h in range(n)},
    )


async def test_a_commit_that_fails_is_rolled_back(tmp_path: Path) -> None:
    """A COMMIT that fails leaves SQLite's transaction open (here a deferred foreign key,
    checked at COMMIT): the writer rolls it back, so the next write works (before the
    fix every later write failed with 'cannot start a transaction within a
    transaction' and the write lock stayed held until a restart)."""
    store = SQLiteStore(tmp_path / "tally.db", node="n")
    await store.open()
    try:
        ws = await store.create_workspace("ws", "ws")
        counter = await store.create_counter(ws.id, "c")

        def orphan(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA defer_foreign_keys = ON")
            conn.execute(
                "INSERT INTO counters (workspace_id, name, created_at, updated_at) "
                "VALUES (999999, 'orphan', 0, 0)"
            )

        with pytest.raises(StorageError, match="FOREIGN KEY"):
            await store._write(store._tx(orphan))
        totals = await store.apply(many_hours(1, counter.id, 3))
        assert (totals[counter.id].up_count, totals[counter.id].down_count) == (3, 0)
        assert await store.read_counter("ws", "orphan") is None
    finally:
        await store.close()


async def test_a_full_disk_fails_the_batch_and_writes_recover(tmp_path: Path) -> None:
    """A batch that finds the disk full fails whole (StorageError, nothing counted);
    once space is back, writes work again without a restart."""
    with small_disk(tmp_path / "disk") as disk:
        store = SQLiteStore(disk / "tally.db", node="n")
        await store.open()
        try:
            ws = await store.create_workspace("ws", "ws")
            counter = await store.create_counter(ws.id, "c")
            filler = fill(disk)
            with pytest.raises(StorageError):
                await store.apply(many_hours(1, counter.id, 5000))
            filler.unlink()  # space is back
            totals = await store.apply(many_hours(2, counter.id, 10))
            assert (totals[counter.id].up_count, totals[counter.id].down_count) == (10, 0)
            counts = await store.read_counts(counter.id)
            assert counts is not None
            assert counts[:2] == (10, 0)  # the failed batch counted nothing
            assert counts[3] == 2
        finally:
            await store.close()
