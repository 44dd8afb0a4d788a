"""What the abuse tests (test_abuse_*.py) share: a real server on each backend with
metrics on, a browser-like client of its website, and the metrics it counts."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from services import REDIS_URL, require_redis

from .server import TallyCli, TallyServer, sqlite_url

METRICS_TOKEN = "m" * 40
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "a long passphrase 42"


@dataclass
class Backend:
    """One configuration: its database URL and the environment every process gets."""

    name: str
    url: str
    env: dict[str, str]
    workdir: Path

    def cli(self) -> TallyCli:
        return TallyCli(self.url, env=self.env)

    def server(self, extra: Mapping[str, str] | None = None) -> TallyServer:
        n = len(list(self.workdir.glob("server-*")))
        workdir = self.workdir / f"server-{n}"
        workdir.mkdir()
        env = {**self.env, **(extra or {})}
        return TallyServer(workdir, database_url=self.url, env=env)


def database(
    request: pytest.FixtureRequest, tmp_path: Path, env: Mapping[str, str]
) -> tuple[str, dict[str, str]]:
    """The database URL of the backend `request.param` names ("sqlite", or
    "postgresql+redis": a schema and a Redis key prefix of the test's own) and `env`
    with what its processes need for it."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "t.db"), dict(env)
    url = str(request.getfixturevalue("postgres_url"))
    require_redis()
    prefix = str(request.getfixturevalue("redis_prefix"))
    return url, {**env, "TALLY_REDIS_URL": REDIS_URL, "TALLY_REDIS_PREFIX": prefix}


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """SQLite, and PostgreSQL + Redis (a schema and a key prefix of the test's own); the
    rate limit off (the API client measures latency, not the limit), metrics on."""
    env = {"TALLY_RATE_LIMIT": "off", "TALLY_METRICS_TOKEN": METRICS_TOKEN}
    url, env = database(request, tmp_path, env)
    return Backend(request.param, url, env, tmp_path)


async def metric(server: TallyServer, name: str) -> float:
    """A counter or gauge of the server's /metrics (0 if absent)."""
    async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as http:
        r = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200, r.text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", r.text, re.M)
    return float(found.group(1)) if found else 0.0


class Browser:
    """A browser of the website: a cookie jar and the CSRF token of the last page."""

    def __init__(self, server: TallyServer, connections: int = 10) -> None:
        self.http = httpx.AsyncClient(
            base_url=server.base_url,
            trust_env=False,
            timeout=60.0,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=10),
        )
        self.csrf = ""

    async def get(self, path: str) -> httpx.Response:
        r = await self.http.get(path)
        found = CSRF_RE.search(r.text)
        if found:
            self.csrf = found.group(1)
        return r

    async def post(self, path: str, data: Mapping[str, str]) -> httpx.Response:
        if not self.csrf:
            await self.get("/login")
        return await self.http.post(path, data={**data, "csrf_token": self.csrf})

    async def log_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return await self.post("/login", {"email": email, "password": password})

    async def aclose(self) -> None:
        await self.http.aclose()


def make_account(cli: TallyCli, email: str) -> None:
    """A confirmed account with PASSWORD, made by the operator (real argon2id hash)."""
    cli.run("user", "create", email, "--password", PASSWORD, "--verified")


def random_email() -> str:
    return f"x{secrets.token_hex(4)}@example.com"


async def raw_posts(browser: Browser, path: str, forms: list[dict[str, str]]) -> list[int]:
    """POST each form at once, each on a connection of its own, with the browser's cookies
    and CSRF token; their statuses. Plain asyncio streams: the attacker's side costs
    little CPU, so the server's cost is what the API client beside it feels."""
    port = httpx.URL(str(browser.http.base_url)).port
    cookie = "; ".join(f"{k}={v}" for k, v in browser.http.cookies.items())

    async def post(form: dict[str, str]) -> int:
        body = urlencode({**form, "csrf_token": browser.csrf}).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(head.encode() + body)
            await writer.drain()
            status = await reader.readline()
            await reader.read()  # to the end: the answer is complete
            return int(status.split()[1])
        finally:
            writer.close()

    async with asyncio.timeout(120):
        return list(await asyncio.gather(*(post(f) for f in forms)))
