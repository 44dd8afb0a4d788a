"""`tally.client` and the `tally up|down|get|stats|reset` commands against real servers."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from services import TcpProxy

from tally.client import (
    ApiError,
    AsyncClient,
    BadRequestError,
    Client,
    ConflictError,
    ForbiddenError,
    ManagedCounter,
    NotFoundError,
    RateLimitedError,
    UnauthorizedError,
)

from .conftest import ServerFactory
from .server import TALLY, TallyCli, TallyServer, clean_env, free_port


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def backend_url(request: pytest.FixtureRequest, database_url: str) -> str:
    """The database of the test's server, on each backend."""
    if request.param == "sqlite":
        return database_url
    return str(request.getfixturevalue("postgres_url"))


def start(tmp_path: Path, url: str, env: dict[str, str] | None = None) -> TallyServer:
    return TallyServer(tmp_path, database_url=url, args=["--no-bootstrap"], env=env).start()


def test_sync_client_round_trip(tmp_path: Path, backend_url: str) -> None:
    """up, down, get, stats and reset answer typed results; errors carry their status."""
    cli = TallyCli(backend_url)
    cli.workspace("ws")
    write, read = cli.token("ws", "write"), cli.token("ws", "read")
    server = start(tmp_path, backend_url)
    try:
        with Client(server.base_url, write) as tally:
            assert tally.up("ws", "hits").up_count == 1
            counter = tally.up("ws", "hits")
            assert (counter.up_count, counter.down_count, counter.value) == (2, 0, 2)
            assert tally.down("ws", "hits").value == 1
            assert isinstance(counter.updated_at, datetime)
            assert counter.name == "hits"
            assert counter.workspace_slug == "ws"
            stats = tally.stats("ws", "hits")
            assert (stats.up_count, stats.down_count) == (2, 1)
            assert stats.stats["today"]["up"] == 2
            assert tally.reset("ws", "hits").value == 0
        with Client(server.base_url) as anonymous:
            assert anonymous.get("ws", "hits").up_count == 0
            with pytest.raises(NotFoundError) as missing:
                anonymous.get("ws", "nothing")
            assert missing.value.status == 404
            assert "not found" in missing.value.message
            with pytest.raises(UnauthorizedError) as no_token:
                anonymous.reset("ws", "hits")
            assert no_token.value.status == 401
        with Client(server.base_url, read) as reader, pytest.raises(ForbiddenError) as denied:
            reader.reset("ws", "hits")
        assert denied.value.status == 403
        with Client(server.base_url, "tly_" + "x" * 43) as bad, pytest.raises(ApiError) as e:
            bad.get("ws", "hits")
        assert e.value.status == 401
    finally:
        server.close()


async def test_async_client_round_trip(make_server: ServerFactory, cli: TallyCli) -> None:
    """The async client does what the sync one does; names are escaped in the URL."""
    cli.workspace("ws")
    write = cli.token("ws", "write")
    server = make_server(args=["--no-bootstrap"])
    async with AsyncClient(server.base_url, write) as tally:
        ups = await asyncio.gather(*(tally.up("ws", "a b?c") for _ in range(5)))
        assert sorted(c.up_count for c in ups) == [1, 2, 3, 4, 5]
        assert (await tally.get("ws", "a b?c")).name == "a b?c"
        assert (await tally.down("ws", "a b?c")).down_count == 1
        assert (await tally.stats("ws", "a b?c")).up_count == 5
        assert (await tally.reset("ws", "a b?c")).up_count == 0
    async with AsyncClient(server.base_url) as anonymous:
        with pytest.raises(NotFoundError):
            await anonymous.get("ws", "missing")


def test_retries_429_after_retry_after(make_server: ServerFactory, cli: TallyCli) -> None:
    """Over the limit, the client waits Retry-After and succeeds; without retries, the
    429 is raised with its Retry-After."""
    cli.workspace("ws")
    write = cli.token("ws", "write")
    server = make_server(args=["--no-bootstrap"], env={"TALLY_RATE_LIMIT": "2/2s"})
    with Client(server.base_url, write, retries=0) as once:
        once.up("ws", "c")
        once.up("ws", "c")
        with pytest.raises(RateLimitedError) as limited:
            once.up("ws", "c")
        assert limited.value.status == 429
        assert limited.value.retry_after is not None
        assert limited.value.retry_after >= 1
    with Client(server.base_url, write, retries=3) as patient:
        assert patient.up("ws", "c").up_count == 3  # the 429s counted nothing


async def test_retries_503_until_the_database_is_back(tmp_path: Path, postgres_url: str) -> None:
    """With PostgreSQL cut off the server answers 503; the client retries and gets the
    count in once the database is back, counted once."""
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    via_proxy = postgres_url.replace(
        f"{target.hostname}:{target.port or 5432}", f"127.0.0.1:{proxy.port}", 1
    )
    cli = TallyCli(via_proxy)
    await asyncio.to_thread(cli.workspace, "ws")
    write = await asyncio.to_thread(cli.token, "ws", "write")
    server = TallyServer(tmp_path, database_url=via_proxy, args=["--no-bootstrap"])
    await asyncio.to_thread(server.start)
    try:
        async with AsyncClient(server.base_url, write, retries=0) as once:
            assert (await once.up("ws", "c")).up_count == 1
            await proxy.cut()
            with pytest.raises(ApiError) as down:
                await once.up("ws", "c")
            assert down.value.status == 503

        async def back_soon() -> None:
            await asyncio.sleep(1.5)
            await proxy.start()  # the same port again

        async with AsyncClient(server.base_url, write, retries=20, max_delay=1.0) as patient:
            returning = asyncio.create_task(back_soon())
            counter = await patient.up("ws", "c")
            await returning
        assert counter.up_count == 2
    finally:
        await asyncio.to_thread(server.close)
        await proxy.cut()


def _tally(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TALLY), *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=30,
        check=False,
    )


def test_cli_commands(make_server: ServerFactory, cli: TallyCli) -> None:
    """tally up|down|get|stats|reset WORKSPACE/NAME with --url/--token or TALLY_URL/TOKEN."""
    cli.workspace("ws")
    write = cli.token("ws", "write")
    server = make_server(args=["--no-bootstrap"])
    flags = ["--url", server.base_url, "--token", write]
    out = _tally("up", "ws/hits", *flags)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ws/hits: up 1, down 0, value 1\n"
    env = {"TALLY_URL": server.base_url, "TALLY_TOKEN": write}
    assert _tally("down", "ws/hits", env=env).stdout == "ws/hits: up 1, down 1, value 0\n"
    got = _tally("get", "ws/hits", "--json", "--url", server.base_url)
    assert '"up_count": 1' in got.stdout
    assert '"today"' in _tally("stats", "ws/hits", env=env).stdout
    assert _tally("reset", "ws/hits", env=env).stdout == "ws/hits: up 0, down 0, value 0\n"
    missing = _tally("get", "ws/nothing", "--url", server.base_url)
    assert missing.returncode == 1
    assert "404: " in missing.stderr
    assert "Traceback" not in missing.stderr
    assert _tally("get", "no-slash", "--url", server.base_url).returncode == 2


def test_cli_cannot_connect_names_the_url_setting() -> None:
    """Nothing listens at the address: one clear error naming the address and where it
    came from (--url, TALLY_URL, or the default), never a bare "Connection refused"."""
    url = f"http://127.0.0.1:{free_port()}"
    flag = _tally("get", "default/first", "--url", url)
    assert flag.returncode == 1
    assert flag.stderr == (
        f"Error: cannot connect to {url}: [Errno 111] Connection refused\n"
        "Is Tally running there? The address comes from --url (else TALLY_URL).\n"
    )
    env = _tally("up", "default/first", env={"TALLY_URL": url})
    assert env.returncode == 1
    assert "The address comes from TALLY_URL (--url overrides it)." in env.stderr
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 8000))
        except OSError:
            pytest.skip("something listens on 127.0.0.1:8000, the default address")
    default = _tally("get", "default/first")
    assert default.returncode == 1
    assert (
        "http://127.0.0.1:8000 is the default address: point to your server with --url or TALLY_URL"
    ) in default.stderr
    assert "Traceback" not in flag.stderr + env.stderr + default.stderr


def test_by_set_and_management(tmp_path: Path, backend_url: str) -> None:
    """up/down by N, set, and the management API (counters, rules, tokens, settings)
    through the sync client against a real server; errors are the status's exception
    and change nothing."""
    cli = TallyCli(backend_url)
    cli.workspace("ws")
    admin, write, read = (cli.token("ws", p) for p in ("admin", "write", "read"))
    server = start(tmp_path, backend_url)
    try:
        with Client(server.base_url, admin, retries=0) as boss, Client(server.base_url, write) as w:
            assert w.up("ws", "hits", by=5).up_count == 5
            assert w.down("ws", "hits", by=2).value == 3
            with pytest.raises(ValueError, match="by must be"):
                w.up("ws", "hits", by=0)
            with pytest.raises(ForbiddenError):
                w.set("ws", "hits", 100)
            counter = boss.set("ws", "hits", 100, 1)
            assert (counter.up_count, counter.down_count, counter.value) == (100, 1, 99)
            with pytest.raises(BadRequestError):
                boss.set("ws", "hits", -1)

            made = boss.create_counter("ws", "stock", description="shelf", private=True)
            assert isinstance(made, ManagedCounter)
            assert (made.name, made.description, made.private, made.value) == (
                "stock", "shelf", True, 0,
            )  # fmt: skip
            with pytest.raises(ConflictError):
                boss.create_counter("ws", "stock")
            page = boss.list_counters("ws", "STO")
            assert (page.total, [c.id for c in page.counters]) == (1, [made.id])
            assert boss.list_counters("ws", limit=1, offset=1).counters[0].name == "stock"

            ruled = boss.update_counter(
                "ws", made.id, floor=0, ceiling=2, allowed_origins=["HTTPS://Shop.Example/"]
            )
            assert (ruled.floor, ruled.ceiling) == (0, 2)
            assert ruled.allowed_origins == ("https://shop.example",)
            assert ruled.description == "shelf"
            assert w.up("ws", "stock", by=2).value == 2
            with pytest.raises(ConflictError) as crossed:
                w.up("ws", "stock")
            assert crossed.value.status == 409
            with pytest.raises(ConflictError):  # past the stored ceiling: a conflict
                boss.update_counter("ws", made.id, floor=5)
            with pytest.raises(BadRequestError):  # a request that contradicts itself
                boss.update_counter("ws", made.id, floor=5, ceiling=4)
            cleared = boss.update_counter("ws", made.id, ceiling=None, private=False)
            assert (cleared.floor, cleared.ceiling, cleared.private) == (0, None, False)
            assert boss.counter("ws", made.id) == cleared
            assert w.up("ws", "stock").value == 3
            with pytest.raises(ConflictError) as broken:
                boss.update_counter("ws", made.id, ceiling=2, unique=True)  # the value is 3
            assert "the counter's value is 3, above a ceiling of 2" in str(broken.value)
            kept = boss.counter("ws", made.id)
            assert (kept.floor, kept.ceiling, kept.unique) == (0, None, None)  # nothing changed
            assert made.unique is None
            windowed = boss.update_counter("ws", made.id, unique=7 * 86400)
            assert (windowed.unique, windowed.raw["unique"]) == (7 * 86400, 7 * 86400)
            assert boss.update_counter("ws", made.id, unique=True).unique == 86400
            with pytest.raises(BadRequestError):
                boss.update_counter("ws", made.id, unique=60)
            assert boss.counter("ws", made.id).unique == 86400
            assert boss.update_counter("ws", made.id, unique=None).unique is None
            boss.delete_counter("ws", made.id)
            with pytest.raises(NotFoundError):
                boss.counter("ws", made.id)

            new = boss.create_token("ws", "read", name="ci", expires_in_days=7)
            assert new.secret is not None
            assert new.secret.startswith(new.prefix)
            assert (new.permission, new.name, new.revoked_at) == ("read", "ci", None)
            assert new.expires_at is not None
            listed = {t.id: t for t in boss.list_tokens("ws")}
            assert listed[new.id].secret is None
            assert len(listed) == 4
            with Client(server.base_url, new.secret) as fresh:
                assert fresh.get("ws", "hits").value == 99
            assert boss.revoke_token("ws", new.id).revoked_at is not None

            settings = boss.settings("ws")
            assert (settings.slug, settings.v1_open, settings.allowed_origins) == ("ws", False, ())
            changed = boss.update_settings(
                "ws", v1_open=True, allowed_origins=["https://b.example"]
            )
            assert (changed.v1_open, changed.allowed_origins) == (True, ("https://b.example",))
            pages = boss.update_settings(
                "ws", allowed_origins=["https://b.example"], page_views=True, honour_dnt=True
            )
            assert (pages.page_views, pages.honour_dnt) == (True, True)
            assert boss.update_settings("ws", page_views=False).page_views is False
            assert boss.update_settings("ws", allowed_origins=()).v1_open is True
            v1 = httpx.get(f"{server.base_url}/v1/ws/hits", timeout=10)
            assert v1.json()["count"] == 99
            with pytest.raises(BadRequestError):
                boss.update_settings("ws", allowed_origins=["not an origin"])
            assert boss.settings("ws").allowed_origins == ()

        with Client(server.base_url, read) as reader, pytest.raises(ForbiddenError):
            reader.list_counters("ws")
        with Client(server.base_url) as anonymous:
            with pytest.raises(UnauthorizedError):
                anonymous.settings("ws")
            with pytest.raises(UnauthorizedError):
                anonymous.up("ws", "hits", by=2)
            assert anonymous.get("ws", "hits").value == 99
    finally:
        server.close()


async def test_async_client_by_set_and_management(
    make_server: ServerFactory, cli: TallyCli
) -> None:
    """The async client makes the same calls (one request spec for both clients)."""
    cli.workspace("ws")
    admin = cli.token("ws", "admin")
    server = make_server(args=["--no-bootstrap"])
    async with AsyncClient(server.base_url, admin) as tally:
        ups = await asyncio.gather(*(tally.up("ws", "c", by=3) for _ in range(4)))
        assert sorted(c.up_count for c in ups) == [3, 6, 9, 12]
        assert (await tally.down("ws", "c", by=2)).value == 10
        assert (await tally.set("ws", "c", 7)).value == 7
        made = await tally.create_counter("ws", "made")
        assert (await tally.update_counter("ws", made.id, floor=-1)).floor == -1
        assert (await tally.update_counter("ws", made.id, unique=3600)).unique == 3600
        assert (await tally.list_counters("ws")).total == 2
        token = await tally.create_token("ws", "write")
        assert [t.id for t in await tally.list_tokens("ws")][-1] == token.id
        assert (await tally.revoke_token("ws", token.id)).revoked_at is not None
        assert (await tally.update_settings("ws", v1_open=True)).v1_open is True
        assert (await tally.settings("ws")).v1_open is True
        await tally.delete_counter("ws", made.id)
        with pytest.raises(NotFoundError):
            await tally.counter("ws", made.id)


def test_cli_by_and_set(make_server: ServerFactory, cli: TallyCli) -> None:
    """tally up|down --by N and tally set WORKSPACE/NAME --up N [--down M]."""
    cli.workspace("ws")
    admin, write = cli.token("ws", "admin"), cli.token("ws", "write")
    server = make_server(args=["--no-bootstrap"])
    env = {"TALLY_URL": server.base_url, "TALLY_TOKEN": write}
    assert _tally("up", "ws/c", "--by", "5", env=env).stdout == "ws/c: up 5, down 0, value 5\n"
    assert _tally("down", "ws/c", "--by", "2", env=env).stdout == "ws/c: up 5, down 2, value 3\n"
    assert _tally("up", "ws/c", "--by", "0", env=env).returncode == 2
    denied = _tally("set", "ws/c", "--up", "9", env=env)
    assert denied.returncode == 1
    assert "403: " in denied.stderr
    boss = {**env, "TALLY_TOKEN": admin}
    out = _tally("set", "ws/c", "--up", "9", "--down", "4", env=boss)
    assert out.stdout == "ws/c: up 9, down 4, value 5\n", out.stderr
    assert _tally("set", "ws/c", env=boss).returncode == 2  # --up is required
    assert _tally("set", "ws/c", "--up", "-1", env=boss).returncode == 2
