"""Shared fixtures: a store per backend, a started app, an in-process HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Awaitable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from tally.auth import issue_token
from tally.config import Settings
from tally.models import Counter, Permission, Workspace
from tally.storage import Store, store_from_url
from tally.web.app import App, create_app, load_secret_key


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tally.db'}"


@pytest.fixture(params=["sqlite"])
def store_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """The database URL of each backend the contract suite runs against."""
    return sqlite_url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = store_from_url(store_url, node="test-node")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    """Test settings: the rate limit is on (tests of it lower it with `replace`)."""
    return Settings(database_url=sqlite_url)


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
