"""Shared fixtures: a store per backend, a started app, an in-process HTTP client."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis
from psycopg import sql
from services import require_redis
from site_client import SiteClient

from tally.auth import issue_token
from tally.config import Settings
from tally.models import Counter, Permission, Workspace
from tally.storage import Store, store_from_url
from tally.web.app import App, create_app, load_secret_key


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tally.db'}"


POSTGRES_URL = os.environ.get(
    "TALLY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def with_query(url: str, **params: str) -> str:
    """`url` with `params` added to its query string."""
    parts = urlsplit(url)
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


@pytest.fixture(scope="session")
def postgres_base_url() -> str:
    """TALLY_TEST_POSTGRES_URL, once the server answers there; the tests that need it are
    skipped if it does not, except under CI=true, where they fail: CI never skips them."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        where = urlsplit(POSTGRES_URL)
        reason = (
            f"PostgreSQL at {where.hostname}:{where.port or 5432}{where.path} is not reachable "
            f"(set TALLY_TEST_POSTGRES_URL): {' '.join(str(exc).split())}"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_base_url: str) -> Iterator[str]:
    """A URL whose tables live in a schema of this test's own, dropped at teardown."""
    schema = f"tally_test_{secrets.token_hex(6)}"
    yield with_query(postgres_base_url, schema=schema)
    with psycopg.connect(postgres_base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest) -> str:
    """The database URL of each backend the contract suite runs against."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = store_from_url(store_url, node="test-node")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgresql+redis", marks=pytest.mark.postgres),
    ]
)
def settings(request: pytest.FixtureRequest) -> Settings:
    """App settings for each configuration: embedded SQLite, and the scale-out one
    (PostgreSQL in a schema of the test's own, Redis under a key prefix of its own).
    The rate limit is on; tests of it lower it with `replace`."""
    if request.param == "sqlite":
        return Settings(database_url=request.getfixturevalue("sqlite_url"))
    return Settings(
        database_url=request.getfixturevalue("postgres_url"),
        redis_url=require_redis(),
        redis_prefix=request.getfixturevalue("redis_prefix"),
    )


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted at teardown."""
    prefix = f"tally-test-{secrets.token_hex(6)}:"
    yield prefix
    client = aioredis.Redis.from_url(require_redis())
    async for key in client.scan_iter(match=f"{prefix}*"):
        await client.delete(key)
    await client.aclose()


@dataclass
class Harness:
    """A started app, an HTTP client on it, and shortcuts to set up data."""

    app: App
    client: httpx.AsyncClient

    @property
    def store(self) -> Store:
        assert self.app.services is not None
        return self.app.services.store

    async def workspace(self, slug: str = "ws") -> Workspace:
        return await self.store.create_workspace(slug, slug)

    async def token(self, workspace: Workspace, permission: Permission) -> str:
        key = await load_secret_key(self.store, self.app.settings)
        return (await issue_token(self.store, key, workspace.id, permission)).secret

    async def counter(
        self, workspace: Workspace, name: str, *, private: bool = False, description: str = ""
    ) -> Counter:
        return await self.store.create_counter(
            workspace.id, name, private=private, description=description
        )

    async def get(self, path: str, token: str | None = None, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.get(path, headers=headers, **kw)  # type: ignore[arg-type]


HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness(settings: Settings) -> AsyncIterator[HarnessFactory]:
    """Start apps with `await make_harness(**setting_overrides)`; all stop at teardown."""
    apps: list[tuple[App, httpx.AsyncClient]] = []

    async def make(**overrides: object) -> Harness:
        app = create_app(replace(settings, **overrides))  # type: ignore[arg-type]
        await app.startup()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("198.51.100.7", 40000)),
            base_url="http://tally.test",
        )
        apps.append((app, client))
        return Harness(app, client)

    yield make
    for app, client in reversed(apps):
        await client.aclose()
        await app.shutdown()


@pytest.fixture
async def harness(make_harness: HarnessFactory) -> Harness:
    return await make_harness()


BrowserFactory = Callable[..., Awaitable[SiteClient]]


@pytest.fixture
async def make_browser() -> AsyncIterator[BrowserFactory]:
    """`await make_browser(harness)`: a SiteClient with a cookie jar of its own (one person's
    browser) on the harness's app; all closed at teardown."""
    clients: list[httpx.AsyncClient] = []

    async def make(harness: Harness, ip: str = "198.51.100.7") -> SiteClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=harness.app, client=(ip, 40000)),
            base_url="http://tally.test",
        )
        clients.append(client)
        return SiteClient(client)

    yield make
    for client in clients:
        await client.aclose()
