"""Storage faults on a running server: 503 with Retry-After for what cannot be done, no
crash, nothing acknowledged lost, recovery without a restart.

SQLite: the database file made read-only (`chattr +i`, which even root cannot write
through, on the open file), a full disk (a small tmpfs; where mounting is not allowed, a
file-size limit, RLIMIT_FSIZE, set on the running server with `prlimit`), the database
locked by another process. PostgreSQL and Redis are never stopped (other work shares
them): a TCP proxy we control stands between the server and each, and is cut (the
service stopped), or holds every byte (a network that drops packets), then restored.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from services import TcpProxy, require_redis
from test_sqlite_faults import fill

from .conftest import ServerFactory
from .server import HttpConnection, Response, TallyCli, TallyServer, sqlite_url

ENV = {"TALLY_RATE_LIMIT": "off"}


async def get(server: TallyServer, path: str, token: str, within: float = 30.0) -> Response:
    conn = await HttpConnection.open(server.port)
    try:
        return await conn.get(path, token, within=within)
    finally:
        conn.close()


async def up_count(server: TallyServer, name: str, token: str) -> int:
    r = await get(server, f"/v2/ws/{name}", token)
    assert r.status == 200, r.body
    return int(r.json()["data"]["up_count"])


def assert_unavailable(r: Response) -> None:
    assert r.status == 503, (r.status, r.body)
    assert r.json()["code"] == "503"
    assert int(r.headers["retry-after"]) >= 1


async def recover(server: TallyServer, path: str, token: str, within: float = 20.0) -> None:
    """Ups answer 200 again, with no restart (the same process)."""
    pid = server.proc.pid if server.proc else None
    deadline = time.monotonic() + within
    while (r := await get(server, path, token)).status != 200:
        assert r.status == 503, (r.status, r.body)
        assert time.monotonic() < deadline, f"no recovery in {within} s\n{server.output()}"
        await asyncio.sleep(0.2)
    assert server.running
    assert server.proc is not None
    assert server.proc.pid == pid


@pytest.fixture
def sqlite_server(make_server: ServerFactory, cli: TallyCli) -> tuple[TallyServer, str]:
    server = make_server(args=["--no-bootstrap"], env=ENV)
    cli.workspace("ws")
    return server, cli.token("ws", "write")


@contextlib.contextmanager
def immutable(paths: list[Path]) -> Iterator[None]:
    """Make files read-only for every process, root included, open ones included."""
    done = []
    try:
        for path in paths:
            r = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
            if r.returncode:
                pytest.skip(f"cannot make {path.name} read-only: chattr: {r.stderr.strip()}")
            done.append(path)
        yield
    finally:
        for path in done:
            subprocess.run(["chattr", "-i", str(path)], check=False)


async def test_database_file_made_read_only(
    sqlite_server: tuple[TallyServer, str], database_url: str
) -> None:
    """The database file (and its WAL) turn read-only under a running server: writes
    are 503 with Retry-After, reads still answer, and writes work again once the files
    are writable, with no restart; every acknowledged up is there."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr (e2fsprogs) is not installed")
    server, token = sqlite_server
    for _ in range(5):
        assert (await get(server, "/v2/ws/ro/up", token)).status == 200
    db = Path(database_url.removeprefix("sqlite:///"))
    with immutable([p for p in (db, Path(f"{db}-wal")) if p.exists()]):
        assert_unavailable(await get(server, "/v2/ws/ro/up", token))
        assert await up_count(server, "ro", token) == 5  # the 503 counted nothing
    await recover(server, "/v2/ws/ro/up", token)
    assert await up_count(server, "ro", token) == 6


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "8m") -> Iterator[bool]:
    """A tmpfs at `path`; yields False (and makes a plain directory) if mounting is not
    allowed here."""
    path.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    try:
        yield r.returncode == 0
    finally:
        if r.returncode == 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def group_pids(pgid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@contextlib.contextmanager
def file_size_limit(server: TallyServer) -> Iterator[None]:
    """No file of the running server may grow (RLIMIT_FSIZE 0: Python ignores SIGXFSZ,
    so a write that would grow a file fails with EFBIG, as on a full disk)."""
    assert server.proc is not None
    pids = group_pids(server.proc.pid)
    for pid in pids:
        subprocess.run(["prlimit", f"--pid={pid}", "--fsize=0:unlimited"], check=True)
    try:
        yield
    finally:
        for pid in pids:
            subprocess.run(["prlimit", f"--pid={pid}", "--fsize=unlimited"], check=False)


@pytest.mark.parametrize("how", ["tmpfs", "rlimit-fsize"])
async def test_disk_full(tmp_path: Path, how: str) -> None:
    """The disk fills up under a running server: ups are 503 with Retry-After and count
    nothing; once there is room again they work, no restart; nothing acknowledged lost."""
    with tmpfs(tmp_path / "disk") as mounted:
        if how == "tmpfs" and not mounted:
            pytest.skip("mounting a tmpfs is not allowed here: the rlimit-fsize case covers it")
        url = sqlite_url(tmp_path / "disk" / "t.db")
        cli = TallyCli(url)
        cli.workspace("ws")
        token = cli.token("ws", "write")
        workdir = tmp_path / "server"
        workdir.mkdir()
        server = TallyServer(workdir, database_url=url, args=["--no-bootstrap"], env=ENV)
        server.start()
        try:
            acked = 0
            for _ in range(20):
                acked += (await get(server, "/v2/ws/full/up?by=50", token)).status == 200
            if how == "tmpfs":
                filler = fill(tmp_path / "disk")
                full: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
            else:
                full = file_size_limit(server)
            with full:
                # new counters need new pages, which the full disk cannot give (an up
                # of an existing counter may still fit in its page: either is right)
                refused, counted = 0, []
                for i in range(40):
                    r = await get(server, f"/v2/ws/full-{i}/up?by=1000", token)
                    if r.status == 200:
                        counted.append(f"full-{i}")
                    else:
                        assert_unavailable(r)
                        refused += 1
                assert refused, "the full disk refused nothing"
                assert server.running
            if how == "tmpfs":
                filler.unlink()
            await recover(server, "/v2/ws/full/up?by=50", token)
            acked += 1
            assert await up_count(server, "full", token) == 50 * acked
            for name in counted:
                assert await up_count(server, name, token) == 1000
        finally:
            server.close()


async def test_database_locked_by_another_process(
    sqlite_server: tuple[TallyServer, str], database_url: str
) -> None:
    """Another process holds the write lock for 2 s: ups wait for it (within the 10 s
    busy timeout), then all commit and are answered; nothing lost, no restart."""
    server, token = sqlite_server
    assert (await get(server, "/v2/ws/locked/up", token)).status == 200
    db = database_url.removeprefix("sqlite:///")
    lock = sqlite3.connect(db, timeout=5, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    ups = [asyncio.create_task(get(server, "/v2/ws/locked/up", token)) for _ in range(20)]
    await asyncio.sleep(2.0)
    assert not any(u.done() for u in ups), "an up was answered while the lock was held"
    lock.rollback()
    lock.close()
    answers = await asyncio.gather(*ups)
    assert [r.status for r in answers] == [200] * 20
    assert sorted(int(r.json()["data"]["up_count"]) for r in answers) == list(range(2, 22))
    assert time.monotonic() - started < 10
    assert await up_count(server, "locked", token) == 21


# PostgreSQL and Redis behind a proxy ---------------------------------------------------


def via(proxy: TcpProxy, url: str) -> str:
    target = urlsplit(url)
    return url.replace(f"{target.hostname}:{target.port or 5432}", f"127.0.0.1:{proxy.port}", 1)


@pytest.fixture
async def pg_proxy(postgres_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    yield proxy, via(proxy, postgres_url)
    proxy.resume()
    await proxy.cut()


async def start_node(tmp_path: Path, url: str, env: dict[str, str]) -> tuple[TallyServer, str]:
    cli = TallyCli(url)
    await asyncio.to_thread(cli.workspace, "ws")
    token = await asyncio.to_thread(cli.token, "ws", "write")
    (tmp_path / "node").mkdir()
    node = TallyServer(tmp_path / "node", database_url=url, args=["--no-bootstrap"], env=env)
    await asyncio.to_thread(node.start)
    return node, token


@pytest.mark.parametrize("fault", ["stopped", "dropping-packets"])
async def test_postgresql_fault_under_load(
    tmp_path: Path, pg_proxy: tuple[TcpProxy, str], fault: str, redis_prefix: str
) -> None:
    """PostgreSQL stops (the proxy cut) or the network holds every packet for 2 s while
    16 clients count: every request is answered, 200 or 503 with Retry-After (or, for a
    batch whose outcome the cut made unknown, 200 once the database is back and says it
    committed); every 200 is stored and nothing more than was sent; counting resumes by
    itself."""
    proxy, url = pg_proxy
    redis = require_redis()
    env = {**ENV, "TALLY_REDIS_URL": redis, "TALLY_REDIS_PREFIX": redis_prefix}
    node, token = await start_node(tmp_path, url, env)
    statuses: list[int] = []
    unavailable: list[Response] = []
    slowest = 0.0  # seconds, the longest wait for an answer
    stop = asyncio.Event()

    async def client() -> None:
        nonlocal slowest
        conn = await HttpConnection.open(node.port)
        try:
            while not stop.is_set():
                sent = time.monotonic()
                r = await conn.get("/v2/ws/pg/up", token, within=40)
                slowest = max(slowest, time.monotonic() - sent)
                statuses.append(r.status)
                if r.status == 503:
                    unavailable.append(r)
                    await asyncio.sleep(0.05)
        finally:
            conn.close()

    try:
        clients = [asyncio.create_task(client()) for _ in range(16)]
        await asyncio.sleep(0.5)
        if fault == "stopped":
            await proxy.cut()
        else:
            proxy.stall()
        await asyncio.sleep(2.0)
        if fault == "stopped":
            await proxy.start()
        else:
            proxy.resume()
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*clients)  # every request answered: no connection error
        for r in unavailable:
            assert_unavailable(r)
        assert set(statuses) <= {200, 503}, set(statuses)
        if fault == "stopped":
            # the stop was felt: answered 503, or (a batch sent when the connection
            # dropped) held until the database was back and its outcome known
            assert unavailable or slowest >= 1.0, "the stopped database went unnoticed"
        await recover(node, "/v2/ws/pg/up", token)
        acked = statuses.count(200) + 1
        assert await up_count(node, "pg", token) == acked  # each 503 counted nothing
        print(f"\n{fault}: {len(statuses)} answers, {len(unavailable)} of them 503")
    finally:
        await asyncio.to_thread(node.close)


async def test_redis_stopped(tmp_path: Path, postgres_url: str, redis_prefix: str) -> None:
    """Redis goes away under a running node: counting goes on (the node limits on its
    own), /readyz stays ready and reports Redis degraded, and when Redis is back the node
    uses it again;
    every up is counted."""
    target = urlsplit(require_redis())
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    env = {
        "TALLY_RATE_LIMIT": "600/minute",
        "TALLY_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0",
        "TALLY_REDIS_PREFIX": redis_prefix,
    }
    node, token = await start_node(tmp_path, postgres_url, env)
    try:
        acked = 0
        for _ in range(5):
            acked += (await get(node, "/v2/ws/r/up", token)).status == 200
        await proxy.cut()
        for _ in range(5):
            r = await get(node, "/v2/ws/r/up", token)
            assert r.status == 200, r.body
            assert "x-ratelimit-remaining" in r.headers
            acked += 1
        ready = await get(node, "/readyz", token)
        assert ready.status == 200, ready.body  # the node serves: degraded, not unready
        assert b'"redis":"degraded: ' in ready.body, ready.body
        await proxy.start()
        deadline = time.monotonic() + 15
        while b'"redis":"ok"' not in (await get(node, "/readyz", token)).body:
            assert time.monotonic() < deadline, f"Redis not used again\n{node.output()}"
            await asyncio.sleep(0.2)
        acked += (await get(node, "/v2/ws/r/up", token)).status == 200
        assert await up_count(node, "r", token) == acked == 11
        assert node.running
    finally:
        await asyncio.to_thread(node.close)
        await proxy.cut()
