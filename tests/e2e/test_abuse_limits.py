"""Per-client limits and live streams against a real server, on SQLite and on
PostgreSQL + Redis: one IPv6 /64 is one client (the API's rate limit, stream slots),
and a stream whose access ends ends within one heartbeat, saying why.

The server listens on [::1] and trusts ::1 as its proxy, so X-Forwarded-For names the
client: the test is a proxy forwarding many addresses of one /64, as a client that
takes a new address of its /64 for every request would look behind a real one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest
import redis
from services import require_redis

from .server import MADE_TOKENS, HttpConnection, TallyCli, TallyServer, sqlite_url
from .sse_client import RawStream

pytestmark = [pytest.mark.e2e, pytest.mark.abuse]

V6 = "::1"
NETWORK = "2001:db8:64:1"  # the attacker's /64
HEARTBEAT = 1.0
CACHE_TTL = 0.2

Backend = tuple[str, dict[str, str]]
Serve = Callable[..., TallyServer]


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgresql+redis", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """(database URL, environment) of each backend; Redis keys under a prefix of the
    test's own, deleted at teardown."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "t.db"), {}
        return
    url = require_redis()
    prefix = f"tally-test-{uuid.uuid4().hex[:12]}:"
    yield (
        str(request.getfixturevalue("postgres_url")),
        {
            "TALLY_REDIS_URL": url,
            "TALLY_REDIS_PREFIX": prefix,
        },
    )
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture
def cli(backend: Backend) -> TallyCli:
    return TallyCli(backend[0])


@pytest.fixture
def serve(tmp_path: Path, backend: Backend) -> Iterator[Serve]:
    """`serve(**env)`: a started server on [::1] that trusts ::1's X-Forwarded-For."""
    servers: list[TallyServer] = []

    def start(**env: str) -> TallyServer:
        workdir = tmp_path / f"server-{len(servers)}"
        workdir.mkdir()
        database_url, backend_env = backend
        server = TallyServer(
            workdir,
            database_url=database_url,
            args=["--no-bootstrap"],
            env={**backend_env, "TALLY_TRUSTED_PROXIES": V6, **env},
            host=V6,
        )
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.close()


def via(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def forwarded_burst(
    server: TallyServer, path: str, addresses: list[str], connections: int = 8
) -> Counter[int]:
    """One GET of `path` per address (as the proxy's X-Forwarded-For), over
    `connections` keep-alive connections; the statuses."""
    statuses: Counter[int] = Counter()
    todo = iter(addresses)

    async def worker() -> None:
        conn = await HttpConnection.open(server.port, host=V6)
        try:
            for address in todo:
                statuses[(await conn.get(path, extra=via(address))).status] += 1
        finally:
            conn.close()

    async with asyncio.timeout(120), asyncio.TaskGroup() as workers:
        for _ in range(connections):
            workers.create_task(worker())
    return statuses


async def get_status(server: TallyServer, path: str, headers: Mapping[str, str]) -> int:
    conn = await HttpConnection.open(server.port, host=V6)
    try:
        return (await conn.get(path, extra=headers)).status
    finally:
        conn.close()


async def test_an_ipv6_network_gets_one_rate_limit(serve: Serve, cli: TallyCli) -> None:
    """400 ups from 400 addresses of one /64 are admitted as one client's: about the
    limit of 100, the rest 429 and uncounted; another /64 and an IPv4 client are
    admitted meanwhile (before: all 400 were admitted, one fresh budget per address)."""
    cli.workspace("ws")
    cli.counter("ws/c")
    server = serve(TALLY_RATE_LIMIT="100/60s")
    addresses = [f"{NETWORK}:{i:x}:{i:x}:{i:x}:1" for i in range(1, 401)]
    started = time.monotonic()
    statuses = await forwarded_burst(server, "/v2/ws/c/up", addresses)
    took = time.monotonic() - started
    refill = took * 100 / 60  # GCRA gives back 100 a minute meanwhile
    assert set(statuses) <= {200, 429}, statuses
    assert 100 <= statuses[200] <= 100 + refill + 1, (statuses, took)
    assert await get_status(server, "/v2/ws/c/up", via("2001:db8:64:2::1")) == 200
    assert await get_status(server, "/v2/ws/c/up", via("203.0.113.5")) == 200
    async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as client:
        data = (await client.get("/v2/ws/c", headers=via("203.0.113.6"))).json()["data"]
    assert data["up_count"] == statuses[200] + 2  # a 429 counted nothing


async def test_an_ipv6_network_gets_one_clients_streams(serve: Serve, cli: TallyCli) -> None:
    """25 streams from 25 addresses of one /64: 10 are admitted (TALLY_STREAMS_PER_CLIENT),
    15 refused with 429, so the node's 20 slots are not all taken: another /64 and an
    IPv4 client still get theirs (before: the /64 filled the node, everyone got 429)."""
    cli.workspace("ws")
    cli.counter("ws/c")
    server = serve(TALLY_STREAMS_PER_NODE="20", TALLY_RATE_LIMIT="off")
    streams = [
        await RawStream.open(server.port, "/v2/ws/c/stream", via(f"{NETWORK}::{i:x}"), host=V6)
        for i in range(1, 26)
    ]
    statuses = Counter(s.status for s in streams)
    assert statuses == {200: 10, 429: 15}, statuses
    others = [
        await RawStream.open(server.port, "/v2/ws/c/stream", via(address), host=V6)
        for address in ("2001:db8:64:2::1", "203.0.113.5")
    ]
    assert [s.status for s in others] == [200, 200]
    for stream in (*streams, *others):
        stream.drop()


async def test_a_user_agent_flood_counts_once_by_address(serve: Serve, cli: TallyCli) -> None:
    """A counter counting unique visitors by address alone (`tally counter unique
    --by address`): 60 ups from one /64, each with a new User-Agent and a new address,
    count once; by address and User-Agent (the default) each would have counted."""
    cli.workspace("ws")
    cli.counter("ws/c")
    cli.run("counter", "unique", "ws/c", "1d", "--by", "address")
    server = serve(TALLY_RATE_LIMIT="off")
    conn = await HttpConnection.open(server.port, host=V6)
    try:
        counted = []
        for i in range(1, 61):
            extra = {**via(f"{NETWORK}::{i:x}"), "User-Agent": f"flood/{i}"}
            r = await conn.get("/v2/ws/c/up", extra=extra)
            assert r.status == 200, r.body
            counted.append(r.json()["data"]["counted"])
        r = await conn.get("/v2/ws/c", extra=via("203.0.113.7"))
    finally:
        conn.close()
    assert counted == [True] + [False] * 59
    assert r.json()["data"]["up_count"] == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [("delete", "not_found"), ("revoke", "unauthorized"), ("private", "not_found")],
)
async def test_a_stream_ends_within_one_heartbeat(
    serve: Serve, cli: TallyCli, change: str, reason: str
) -> None:
    """A quiet stream whose counter is deleted, whose token is revoked, or whose counter
    is made private ends within one heartbeat (TALLY_STREAM_HEARTBEAT, 1 s here, plus
    the token cache's TTL) with the `end` event giving the reason (before: it stayed
    open on heartbeats until the counter's next change, or forever)."""
    cli.workspace("ws")
    cli.counter("ws/c")
    admin = cli.token("ws", "admin")
    server = serve(
        TALLY_STREAM_HEARTBEAT=str(HEARTBEAT),
        TALLY_TOKEN_CACHE_TTL=str(CACHE_TTL),
        TALLY_RATE_LIMIT="off",
    )
    auth = {"Authorization": f"Bearer {admin}"}
    async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as client:
        made = await client.post("/v2/ws/-/tokens", headers=auth, json={"permission": "read"})
        assert made.status_code == 201, made.text
        reader = made.json()["data"]
        MADE_TOKENS.add(reader["token"])
        headers = {"Authorization": f"Bearer {reader['token']}"} if change == "revoke" else {}
        stream = await RawStream.open(server.port, "/v2/ws/c/stream", headers, host=V6)
        assert stream.status == 200
        counter = await stream.next_data()
        await asyncio.sleep(HEARTBEAT * 1.5)  # a heartbeat went by: the stream was fine
        if change == "delete":
            r = await client.delete(f"/v2/ws/-/counters/{counter['id']}", headers=auth)
        elif change == "private":
            body = {"visibility": "private"}
            r = await client.patch(f"/v2/ws/-/counters/{counter['id']}", headers=auth, json=body)
        else:
            r = await client.delete(f"/v2/ws/-/tokens/{reader['id']}", headers=auth)
        assert r.status_code == 200, r.text
        changed = time.monotonic()
        data, at = await stream.end_event(within=HEARTBEAT * 2 + 15)
    assert data["reason"] == reason
    assert data["code"] == ("401" if reason == "unauthorized" else "404")
    # one heartbeat, the cache's TTL, and a loaded machine's slack
    assert at - changed < HEARTBEAT + CACHE_TTL + 2.0, at - changed
    stream.drop()
