"""`tally backup` of a live SQLite database under load, and `tally restore`."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from .conftest import ServerFactory
from .server import TALLY, BurstResult, TallyCli, burst, clean_env, get_data, sqlite_url, wait_until


async def tally(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(TALLY),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def up_count(cli: TallyCli, name: str = "c") -> int:
    for line in cli.run("counter", "list", "ws").stdout.splitlines():
        fields = line.split("\t")
        if fields[1] == name:
            return int(fields[3].removeprefix("up="))
    raise AssertionError(f"no counter {name}")


async def test_backup_under_load_keeps_every_acknowledged_count(
    tmp_path: Path, make_server: ServerFactory, cli: TallyCli, database_url: str
) -> None:
    """While 8 connections count, a backup is taken; restored, it holds at least every
    up answered before the backup began, and no more than were answered in all."""
    cli.workspace("ws")
    token = cli.token("ws", "write")
    server = make_server(args=["--no-bootstrap"], env={"TALLY_RATE_LIMIT": "off"})
    result = BurstResult()
    load = asyncio.create_task(
        burst(
            server.port,
            "/v2/ws/c/up",
            total=10_000_000,
            connections=8,
            token=token,
            time_limit=120,
            result=result,
        )
    )
    try:
        assert await wait_until(lambda: result.ok >= 300, within=60), result
        acknowledged = result.ok  # every one of these was answered before the backup began
        copy = tmp_path / "copy.db"
        code, out, err = await tally("backup", str(copy), "--database", database_url)
        assert code == 0, err
        assert "backed up" in out
        during = result.ok - acknowledged
    finally:
        load.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await load
    answered = result.ok
    assert during > 0  # the server kept counting while the copy was made
    restored_url = sqlite_url(tmp_path / "restored.db")
    code, out, err = await tally("restore", str(copy), "--database", restored_url)
    assert code == 0, err
    restored = up_count(TallyCli(restored_url))
    assert acknowledged <= restored <= answered
    server.stop()
    assert up_count(cli) >= answered  # the live database went on


async def test_restore_puts_a_backup_back(
    tmp_path: Path, make_server: ServerFactory, cli: TallyCli, database_url: str
) -> None:
    """A restore over a database with data needs --force; then a server serves the copy."""
    cli.workspace("ws")
    token = cli.token("ws", "write")
    server = make_server(args=["--no-bootstrap"])
    for _ in range(3):
        await get_data(server.port, "/v2/ws/c/up", token)
    copy = tmp_path / "copy.db"
    assert (await tally("backup", str(copy), "--database", database_url))[0] == 0
    code, _, err = await tally("backup", str(copy), "--database", database_url)
    assert code == 1
    assert "exists" in err
    for _ in range(2):
        await get_data(server.port, "/v2/ws/c/up", token)
    server.stop()
    code, _, err = await tally("restore", str(copy), "--database", database_url)
    assert code == 1
    assert "--force" in err
    code, _, err = await tally("restore", str(copy), "--database", database_url, "--force")
    assert code == 0, err
    server.start()
    assert (await get_data(server.port, "/v2/ws/c"))["up_count"] == 3
    assert (await get_data(server.port, "/v2/ws/c/up", token))["up_count"] == 4


async def test_backup_refuses_postgresql_and_bad_copies(tmp_path: Path) -> None:
    """PostgreSQL is pointed to pg_dump; a file that is not a Tally database is refused."""
    code, _, err = await tally(
        "backup", str(tmp_path / "x.db"), "--database", "postgresql://u@127.0.0.1:1/db"
    )
    assert code == 1
    assert "pg_dump" in err
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    code, _, err = await tally("restore", str(junk), "--database", sqlite_url(tmp_path / "new.db"))
    assert code == 1
    assert "Traceback" not in err
