"""Unique visitors (tally.visitors): an anonymous up of a counter with a unique window
counts once per visitor (counter, client IP, User-Agent) within the window, on both
backends, across nodes through Redis, with a local fallback when Redis is down; the
answer says whether it counted; nothing personal reaches the database or Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema  # type: ignore[import-untyped]
import psycopg
import pytest
import redis.asyncio as aioredis
from conftest import Harness, HarnessFactory
from helpers import assert_error, bearer
from hypothesis import given
from hypothesis import settings as settings_hypothesis
from hypothesis import strategies as st
from psycopg import sql
from services import TcpProxy, require_redis
from test_openapi import check_body

from tally.config import Settings
from tally.counters import Counters
from tally.errors import StorageError
from tally.models import CounterChange, Permission
from tally.storage.postgres import PostgresStore
from tally.storage.redis_visitors import RedisVisitors
from tally.visitors import DAY, LocalVisitors, Visitors
from tally.web.openapi import document
from tally.writes import GroupCommit

HOUR = 3_600
# noon of a UTC day: a window of an hour stays inside it
NOON = 20_000 * DAY + 12 * HOUR
AGENT = "Mozilla/5.0 (X11; Linux x86_64) UniqueProbe/7.3"
IP = "198.51.100.7"  # the harness client's address


async def redis_bytes(redis: aioredis.Redis, key: str | bytes) -> bytes:
    """A string key's value (b"" if it is missing)."""
    value = await redis.get(key)
    assert value is None or isinstance(value, bytes)
    return value or b""


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def visitors_of(h: Harness) -> Visitors:
    assert h.app.services is not None
    return h.app.services.counters.visitors


def set_clock(h: Harness, clock: Clock) -> None:
    v = visitors_of(h)
    v.clock = clock
    if isinstance(v, RedisVisitors):
        v.fallback.clock = clock


async def unique_counter(
    h: Harness, window: int = HOUR, name: str = "c", *, private: bool = False
) -> int:
    ws = await h.store.get_workspace("ws") or await h.workspace()
    c = await h.counter(ws, name, private=private)
    assert await h.store.change_counter(c.id, CounterChange(unique_window=window)) is not None
    return c.id


async def up(
    h: Harness, name: str = "c", *, agent: str = AGENT, token: str | None = None, **kw: Any
) -> dict[str, Any]:
    headers = {"User-Agent": agent, **bearer(token)}
    r = await h.client.get(f"/v2/ws/{name}/up", headers=headers, **kw)
    assert r.status_code == 200, r.text
    assert r.json()["code"] == "200"
    data: dict[str, Any] = r.json()["data"]
    return data


async def today_up(h: Harness, name: str = "c") -> int:
    r = await h.client.get(f"/v2/ws/{name}/stats")
    assert r.status_code == 200, r.text
    return int(r.json()["data"]["stats"]["today"]["up"])


@asynccontextmanager
async def client_from(h: Harness, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the harness's app from another address."""
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=h.app, client=(ip, 40001)),
        base_url="http://tally.test",
    )
    try:
        yield client
    finally:
        await client.aclose()


async def test_one_visitor_counts_once_per_window(harness: Harness) -> None:
    """The first up counts; the next ones within the hour answer the totals with
    counted false and change nothing (stats included); from the hour on it counts again."""
    clock = Clock()
    set_clock(harness, clock)
    await unique_counter(harness, HOUR)
    first = await up(harness)
    assert first["counted"] is True
    assert first["up_count"] == 1
    for step in (1, 600, HOUR - 1):
        clock.now = NOON + step
        again = await up(harness)
        assert again["counted"] is False
        assert (again["up_count"], again["down_count"], again["value"]) == (1, 0, 1)
    counter = await harness.store.read_counter("ws", "c")
    assert counter is not None
    assert counter.up_count == 1
    assert await today_up(harness) == 1
    clock.now = NOON + HOUR  # the window is [t, t + 1h)
    assert (await up(harness))["counted"] is True
    clock.now = NOON + HOUR + 10
    assert (await up(harness))["counted"] is False
    assert (await up(harness))["up_count"] == 2
    assert await today_up(harness) == 2


async def test_user_agent_ip_and_counter_tell_visitors_apart(harness: Harness) -> None:
    """Another User-Agent, another client IP, another counter: each a visitor of its own."""
    set_clock(harness, Clock())
    await unique_counter(harness, DAY)
    await unique_counter(harness, DAY, "d")
    assert (await up(harness))["counted"] is True
    assert (await up(harness, agent="curl/8.5.0"))["counted"] is True
    assert (await up(harness, agent=""))["counted"] is True
    assert (await up(harness, "d"))["counted"] is True
    async with client_from(harness, "203.0.113.9") as other:
        r = await other.get("/v2/ws/c/up", headers={"User-Agent": AGENT})
        assert r.json()["data"]["counted"] is True
        r = await other.get("/v2/ws/c/up", headers={"User-Agent": AGENT})
        assert r.json()["data"]["counted"] is False
    again = await up(harness)
    assert again["counted"] is False
    assert again["up_count"] == 4
    assert (await up(harness, "d"))["up_count"] == 1


async def test_an_ipv6_network_is_one_address(harness: Harness) -> None:
    """The addresses of one IPv6 /64 (TALLY_IPV6_PREFIX) are one address for unique
    visitors, as for the rate limit: taking a new address per up counts nothing more."""
    set_clock(harness, Clock())
    await unique_counter(harness, DAY)
    for i, expected in ((1, True), (2, False), (0xFFFF, False)):
        async with client_from(harness, f"2001:db8:7:8::{i:x}") as client:
            r = await client.get("/v2/ws/c/up", headers={"User-Agent": AGENT})
            assert r.json()["data"]["counted"] is expected
    async with client_from(harness, "2001:db8:7:9::1") as client:  # the next /64
        r = await client.get("/v2/ws/c/up", headers={"User-Agent": AGENT})
        assert r.json()["data"]["counted"] is True


async def test_window_slides_across_the_daily_salt_rotation(harness: Harness) -> None:
    """An up at 23:50 with a window of an hour: at 00:10 the next day (a new salt) it
    still does not count, from 00:50 it does; the day's salts differ."""
    clock = Clock(NOON + 11 * HOUR + 50 * 60)  # 23:50
    set_clock(harness, clock)
    await unique_counter(harness, HOUR)
    assert (await up(harness))["counted"] is True
    clock.now += 20 * 60  # 00:10, a new UTC day
    assert (await up(harness))["counted"] is False
    clock.now += 39 * 60 + 59  # 00:49:59
    assert (await up(harness))["counted"] is False
    clock.now += 1  # 00:50: the hour is over
    assert (await up(harness))["counted"] is True
    assert (await up(harness))["up_count"] == 2
    day = int(NOON // DAY)
    v = visitors_of(harness)
    if isinstance(v, LocalVisitors):
        assert v.salts.days() == [day, day + 1]
        first, second = v.salts.get(day, False), v.salts.get(day + 1, False)
    else:
        assert isinstance(v, RedisVisitors)
        redis = aioredis.Redis.from_url(require_redis())
        first = await redis_bytes(redis, v.salt_key(day))
        second = await redis_bytes(redis, v.salt_key(day + 1))
        await redis.aclose()
    assert first
    assert second
    assert first != second
    assert len(first) == 32


async def test_a_window_of_thirty_days_reaches_back_thirty_salts(harness: Harness) -> None:
    """A 30-day window deduplicates across 30 daily salts, and ends exactly; salts older
    than the longest window are deleted."""
    clock = Clock()
    set_clock(harness, clock)
    await unique_counter(harness, 30 * DAY)
    assert (await up(harness))["counted"] is True
    for days in (1, 15, 29):
        clock.now = NOON + days * DAY
        assert (await up(harness))["counted"] is False
    clock.now = NOON + 30 * DAY - 1
    assert (await up(harness))["counted"] is False
    clock.now = NOON + 30 * DAY
    assert (await up(harness))["counted"] is True
    clock.now = NOON + 62 * DAY
    assert (await up(harness))["counted"] is True
    v = visitors_of(harness)
    if isinstance(v, LocalVisitors):
        oldest = int(clock.now // DAY) - 30
        assert min(v.salts.days()) >= oldest
        assert int(NOON // DAY) not in v.salts.days()


async def test_owner_tokens_are_not_deduplicated_down_is_not_affected(harness: Harness) -> None:
    """Ups with a Write or Admin token of the workspace always count (counted true); a
    Read token's up is deduplicated like an anonymous one; down never is, and has no
    `counted`."""
    set_clock(harness, Clock())
    await unique_counter(harness, DAY)
    ws = await harness.store.get_workspace("ws")
    assert ws is not None
    write = await harness.token(ws, Permission.WRITE)
    admin = await harness.token(ws, Permission.ADMIN)
    read = await harness.token(ws, Permission.READ)
    for token in (write, write, admin, admin):
        assert (await up(harness, token=token))["counted"] is True
    assert (await up(harness, token=write, params={"by": 5}))["up_count"] == 9
    assert (await up(harness, token=read))["counted"] is True
    assert (await up(harness, token=read))["counted"] is False
    assert (await up(harness))["counted"] is False  # the same visitor as the Read token's
    for expected in (1, 2):
        r = await harness.client.get("/v2/ws/c/down", headers={"User-Agent": AGENT})
        assert r.status_code == 200
        assert r.json()["data"]["down_count"] == expected
        assert "counted" not in r.json()["data"]
    assert (await up(harness, token=write))["up_count"] == 11


async def test_counters_without_a_window_answer_as_before(harness: Harness) -> None:
    """No `counted` field and every up counts when the option is off (the default)."""
    ws = await harness.workspace()
    c = await harness.counter(ws, "c")
    assert c.unique_window == 0
    for expected in (1, 2):
        data = await up(harness)
        assert data["up_count"] == expected
        assert "counted" not in data


async def test_private_counter(harness: Harness) -> None:
    """A private counter with a window: anonymous ups are the 404 of a missing counter
    and spend nothing; its ups need a Write token, so they always count."""
    set_clock(harness, Clock())
    await unique_counter(harness, DAY, private=True)
    ws = await harness.store.get_workspace("ws")
    assert ws is not None
    write = await harness.token(ws, Permission.WRITE)
    read = await harness.token(ws, Permission.READ)
    r = await harness.client.get("/v2/ws/c/up", headers={"User-Agent": AGENT})
    assert_error(r, 404)
    r = await harness.client.get("/v2/ws/c/up", headers={"User-Agent": AGENT, **bearer(read)})
    assert_error(r, 403)
    for expected in (1, 2, 3):
        data = await up(harness, token=write)
        assert (data["counted"], data["up_count"]) == (True, expected)


async def test_a_refused_count_does_not_spend_the_visit(harness: Harness) -> None:
    """An up refused at the ceiling (409) counts nothing, so the visitor's next up, once
    the ceiling allows it, counts."""
    set_clock(harness, Clock())
    cid = await unique_counter(harness, DAY)
    await harness.store.change_counter(cid, CounterChange(bounds=(None, 0), origins=()))
    assert harness.app.services is not None
    harness.app.services.counters.cache.forget(("ws", "c"))
    r = await harness.client.get("/v2/ws/c/up", headers={"User-Agent": AGENT})
    assert_error(r, 409)
    await harness.store.change_counter(cid, CounterChange(bounds=(None, 5), origins=()))
    harness.app.services.counters.cache.forget(("ws", "c"))
    assert (await up(harness))["counted"] is True
    assert (await up(harness))["counted"] is False


async def test_badge_count_up_is_deduplicated(harness: Harness) -> None:
    """badge.svg?count=up counts like up: once per visitor within the window."""
    set_clock(harness, Clock())
    await unique_counter(harness, DAY)
    for _ in range(3):
        r = await harness.client.get(
            "/v2/ws/c/badge.svg", params={"count": "up"}, headers={"User-Agent": AGENT}
        )
        assert r.status_code == 200
    counter = await harness.store.read_counter("ws", "c")
    assert counter is not None
    assert counter.up_count == 1


# the setting ---------------------------------------------------------------------------


async def patch(h: Harness, cid: int, token: str, body: Any) -> httpx.Response:
    return await h.client.patch(f"/v2/ws/-/counters/{cid}", headers=bearer(token), json=body)


async def test_management_api_sets_the_window(harness: Harness) -> None:
    """PATCH unique: seconds, true (24 h), false or null (off); GET shows it; the API
    applies it at once on this node."""
    set_clock(harness, Clock())
    ws = await harness.workspace()
    c = await harness.counter(ws, "c")
    admin = await harness.token(ws, Permission.ADMIN)
    r = await harness.client.get(f"/v2/ws/-/counters/{c.id}", headers=bearer(admin))
    assert r.json()["data"]["unique"] is None
    for body, expected in (
        ({"unique": 7200}, 7200),
        ({"unique": True}, DAY),
        ({"unique": False}, None),
        ({"unique": 30 * DAY, "description": "x"}, 30 * DAY),
        ({"unique": None}, None),
        ({"unique": HOUR}, HOUR),
    ):
        r = await patch(harness, c.id, admin, body)
        assert r.status_code == 200, r.text
        assert r.json()["data"]["unique"] == expected
    stored = await harness.store.read_counter("ws", "c")
    assert stored is not None
    assert stored.unique_window == HOUR
    assert (await up(harness))["counted"] is True
    assert (await up(harness))["counted"] is False


@pytest.mark.parametrize(
    "value",
    [0, 3599, 30 * DAY + 1, -3600, 3600.5, "24h", "on", [], {}],
    ids=repr,
)
async def test_bad_windows_are_400_and_change_nothing(harness: Harness, value: Any) -> None:
    ws = await harness.workspace()
    c = await harness.counter(ws, "c", description="kept")
    await harness.store.change_counter(c.id, CounterChange(unique_window=7200))
    admin = await harness.token(ws, Permission.ADMIN)
    r = await patch(harness, c.id, admin, {"unique": value, "description": "changed"})
    assert_error(r, 400)
    stored = await harness.store.read_counter("ws", "c")
    assert stored is not None
    assert (stored.unique_window, stored.description) == (7200, "kept")


async def test_by_address_alone_a_new_user_agent_counts_nothing_more(harness: Harness) -> None:
    """PATCH unique_by "address": a visitor is its address alone, so an up with another
    User-Agent in the window does not count (it does with "address_agent", the
    default); another address still counts; GET shows it."""
    set_clock(harness, Clock())
    cid = await unique_counter(harness, DAY)
    ws = await harness.store.get_workspace("ws")
    assert ws is not None
    admin = await harness.token(ws, Permission.ADMIN)
    r = await harness.client.get(f"/v2/ws/-/counters/{cid}", headers=bearer(admin))
    assert r.json()["data"]["unique_by"] == "address_agent"
    assert (await up(harness, agent="a/1"))["counted"] is True
    assert (await up(harness, agent="b/2"))["counted"] is True
    r = await patch(harness, cid, admin, {"unique_by": "address"})
    assert r.status_code == 200, r.text
    assert (r.json()["data"]["unique"], r.json()["data"]["unique_by"]) == (DAY, "address")
    assert (await up(harness, agent="c/3"))["counted"] is True  # first by address alone
    for agent in ("d/4", "e/5", ""):
        assert (await up(harness, agent=agent))["counted"] is False
    async with client_from(harness, "203.0.113.9") as other:
        r = await other.get("/v2/ws/c/up", headers={"User-Agent": "d/4"})
        assert r.json()["data"]["counted"] is True
    assert (await up(harness, agent="f/6"))["up_count"] == 4
    r = await patch(harness, cid, admin, {"unique_by": "address_agent"})
    assert r.json()["data"]["unique_by"] == "address_agent"
    assert (await up(harness, agent="f/6"))["counted"] is True


@pytest.mark.parametrize("value", ["ip", "", None, True, 1, ["address"]], ids=repr)
async def test_a_bad_unique_by_is_400_and_changes_nothing(harness: Harness, value: Any) -> None:
    cid = await unique_counter(harness, DAY)
    ws = await harness.store.get_workspace("ws")
    assert ws is not None
    admin = await harness.token(ws, Permission.ADMIN)
    r = await patch(harness, cid, admin, {"unique_by": value, "unique": HOUR})
    assert_error(r, 400)
    assert "unique_by must be one of address_agent, address" in r.json()["message"]
    stored = await harness.store.read_counter("ws", "c")
    assert stored is not None
    assert (stored.unique_window, stored.unique_by_address) == (DAY, False)


async def test_only_admin_tokens_set_it(harness: Harness) -> None:
    ws = await harness.workspace()
    c = await harness.counter(ws, "c")
    write = await harness.token(ws, Permission.WRITE)
    assert_error(await patch(harness, c.id, write, {"unique": True}), 403)
    r = await harness.client.patch(f"/v2/ws/-/counters/{c.id}", json={"unique": True})
    assert_error(r, 401)
    stored = await harness.store.read_counter("ws", "c")
    assert stored is not None
    assert stored.unique_window == 0


# scale-out -----------------------------------------------------------------------------


@pytest.mark.postgres
async def test_two_nodes_share_the_seen_set(
    settings: Settings, make_harness: HarnessFactory
) -> None:
    """A visitor counted on one node is not counted on the other (and back)."""
    if settings.redis_url is None:
        pytest.skip("one node only without Redis (SQLite)")
    a = await make_harness()
    b = await make_harness()
    clock = Clock()
    set_clock(a, clock)
    set_clock(b, clock)
    await unique_counter(a, DAY)
    assert (await up(a))["counted"] is True
    assert (await up(b))["counted"] is False
    assert (await up(b, agent="other"))["counted"] is True
    assert (await up(a, agent="other"))["counted"] is False
    # racing: one visitor on both nodes at once counts once
    results = await asyncio.gather(*(up(n, agent="racer") for n in (a, b, a, b)))
    assert sorted(r["counted"] for r in results) == [False, False, False, True]
    counter = await a.store.read_counter("ws", "c")
    assert counter is not None
    assert counter.up_count == 3
    for node in (a, b):
        v = visitors_of(node)
        assert isinstance(v, RedisVisitors)
        assert v.fallbacks == 0


@pytest.mark.postgres
async def test_redis_down_falls_back_to_the_node_and_back(
    settings: Settings, make_harness: HarnessFactory
) -> None:
    """With Redis cut, ups still count, deduplicated by the node alone; when Redis is
    back, the shared set applies again."""
    if settings.redis_url is None:
        pytest.skip("no Redis with SQLite")
    target = urlsplit(require_redis())
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    try:
        h = await make_harness(redis_url=f"redis://127.0.0.1:{proxy.port}/0")
        clock = Clock()
        set_clock(h, clock)
        v = visitors_of(h)
        assert isinstance(v, RedisVisitors)
        v.retry_after = 0.0
        await unique_counter(h, DAY)
        assert (await up(h))["counted"] is True
        await proxy.cut()
        # the node's own set does not know the visit Redis holds: it counts once more
        assert (await up(h))["counted"] is True
        assert (await up(h))["counted"] is False
        assert (await up(h, agent="new"))["counted"] is True
        assert v.using_fallback
        assert v.fallbacks == 1
        await proxy.start()
        assert (await up(h))["counted"] is False  # Redis has it
        assert not v.using_fallback
        assert len(v.fallback) == 0  # the node's own visits are dropped
        assert (await up(h, agent="new"))["counted"] is True  # Redis never saw it
        assert (await up(h, agent="newer"))["counted"] is True
        counter = await h.store.read_counter("ws", "c")
        assert counter is not None
        assert counter.up_count == 5
    finally:
        await proxy.cut()


# nothing personal is stored -------------------------------------------------------------

SECRET_IP = "203.0.113.77"
SECRET_AGENT = "ProbeBrowser/9.9 (secret-agent-4f1d)"


async def test_raw_ip_and_agent_never_reach_the_database(make_harness: HarnessFactory) -> None:
    """After ups from a distinctive IP and User-Agent (counted and not) and a shutdown,
    neither is in the SQLite files, in any PostgreSQL row, or in Redis."""
    h = await make_harness()
    set_clock(h, Clock())
    await unique_counter(h, DAY)
    async with client_from(h, SECRET_IP) as client:
        for _ in range(3):
            r = await client.get("/v2/ws/c/up", headers={"User-Agent": SECRET_AGENT})
            assert r.status_code == 200
    counter = await h.store.read_counter("ws", "c")
    assert counter is not None
    assert counter.up_count == 1
    settings = h.app.settings
    await h.app.shutdown()
    needles = (SECRET_IP.encode(), SECRET_AGENT.encode(), b"secret-agent")
    url = settings.database_url
    if url.startswith("sqlite"):
        blobs = sqlite_files(url.removeprefix("sqlite:///"))
        assert blobs
        assert blobs[0]
        for blob in blobs:
            for needle in needles:
                assert needle not in blob
    else:
        assert_no_rows_contain(url, needles)
    if settings.redis_url:
        redis = aioredis.Redis.from_url(settings.redis_url)
        keys: list[bytes] = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}*")]
        assert any(b"uv:" in k for k in keys)
        for key in keys:
            kind = await redis.type(key)
            if kind == b"string":
                values = [await redis_bytes(redis, key)]
            else:  # a counter's seen-set: its members
                assert kind == b"zset", kind
                values = [m for m in await redis.zrange(key, 0, -1) if isinstance(m, bytes)]
                assert values
                assert all(len(m) == 8 for m in values)
            for needle in needles:
                assert needle not in key
                assert all(needle not in value for value in values)
        await redis.aclose()


def sqlite_files(path: str) -> list[bytes]:
    """The bytes of the database file and of its -wal, -shm and -journal if present."""
    blobs = []
    for suffix in ("", "-wal", "-shm", "-journal"):
        file = Path(path + suffix)
        if file.exists():
            blobs.append(file.read_bytes())
    return blobs


def assert_no_rows_contain(url: str, needles: tuple[bytes, ...]) -> None:
    """No row of any table in the URL's schema has any needle in its text form."""
    schema = dict(p.split("=", 1) for p in urlsplit(url).query.split("&") if p)["schema"]
    base = url.split("?", 1)[0]
    with psycopg.connect(base, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        ]
        assert "counters" in tables
        for table in tables:
            query = sql.SQL("SELECT t::text FROM {}.{} t").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            for (text,) in conn.execute(query):
                for needle in needles:
                    assert needle.decode() not in text, table


# the bounded local set ------------------------------------------------------------------


def test_the_local_set_is_bounded_and_forgets_the_oldest_first() -> None:
    """At the bound, ended windows go first; if that is not enough, the oldest visits
    are forgotten (down to 90 %), and those visitors count again: never too few."""
    seen = LocalVisitors(capacity=10)
    for i in range(10):
        assert seen.admit_now(1, HOUR, (f"10.0.0.{i}", b"ua"), NOON + i) is not None
    assert len(seen) == 10
    # all ten windows still run: the oldest are dropped to make room
    assert seen.admit_now(1, HOUR, ("10.0.0.99", b"ua"), NOON + 20) is not None
    assert len(seen) == 10
    assert seen.evicted == 1
    assert seen.admit_now(1, HOUR, ("10.0.0.0", b"ua"), NOON + 21) is not None  # forgotten
    assert seen.admit_now(1, HOUR, ("10.0.0.9", b"ua"), NOON + 22) is None  # still known
    # later, ended windows are swept before anything running is forgotten
    later = NOON + HOUR + 15
    evicted = seen.evicted
    assert seen.admit_now(1, HOUR, ("10.0.1.1", b"ua"), later) is not None
    assert seen.evicted == evicted
    assert len(seen) <= 10
    assert seen.admit_now(1, HOUR, ("10.0.0.99", b"ua"), later) is None


def test_one_counter_is_bounded_on_its_own() -> None:
    """A flood of new visitors on one counter (a new User-Agent each up) is held to
    TALLY_UNIQUE_PER_COUNTER: that counter forgets its oldest visits, other counters'
    visitors are not forgotten."""
    seen = LocalVisitors(capacity=1_000, per_counter=10)
    assert seen.admit_now(2, DAY, ("10.0.0.1", b"ua"), NOON) is not None
    for i in range(100):
        assert seen.admit_now(1, DAY, ("10.0.0.1", b"ua-%d" % i), NOON + i) is not None
        assert len([e for e in seen.entries() if e[0] == 1]) <= 10
    assert len(seen) <= 11
    assert seen.evicted >= 90
    assert seen.admit_now(2, DAY, ("10.0.0.1", b"ua"), NOON + 200) is None  # still known
    assert seen.admit_now(1, DAY, ("10.0.0.1", b"ua-99"), NOON + 200) is None  # the newest
    assert seen.admit_now(1, DAY, ("10.0.0.1", b"ua-0"), NOON + 200) is not None  # forgotten


async def test_a_flood_of_user_agents_is_bounded_per_counter(
    make_harness: HarnessFactory,
) -> None:
    """Through the API, on both backends: 60 ups each with a new User-Agent all count
    (each is a visitor), but the counter's seen-set holds at most
    TALLY_UNIQUE_PER_COUNTER (10 here) entries, in memory or in Redis; another
    counter's visitor is not forgotten."""
    h = await make_harness(unique_per_counter=10)
    set_clock(h, Clock())
    await unique_counter(h, DAY)
    other = await unique_counter(h, DAY, "d")
    assert (await up(h, "d"))["counted"] is True
    for i in range(60):
        assert (await up(h, agent=f"flood/{i}"))["counted"] is True
    v = visitors_of(h)
    if isinstance(v, RedisVisitors):
        ws_c = await h.store.read_counter("ws", "c")
        assert ws_c is not None
        assert await v.client.zcard(v.set_key(ws_c.id)) <= 10
        assert await v.client.zcard(v.set_key(other)) == 1
        assert v.evicted >= 50
        ttl = await v.client.ttl(v.set_key(ws_c.id))
        assert DAY < ttl <= DAY + 60  # it goes when its last window ends
    else:
        assert isinstance(v, LocalVisitors)
        assert len(v) <= 11
        assert v.evicted >= 50
    assert (await up(h, "d"))["counted"] is False
    assert (await up(h, agent="flood/59"))["counted"] is False


def test_raw_values_are_not_kept_in_memory_either() -> None:
    """The set holds 8-byte hashes and end times, and the salts: no IP, no agent."""
    seen = LocalVisitors(capacity=10)
    mark = seen.admit_now(7, DAY, (SECRET_IP, SECRET_AGENT.encode()), NOON)
    assert mark is not None
    assert len(mark.key) == 8
    entries = seen.entries()
    assert len(entries) == 1
    assert all(isinstance(n, int) and isinstance(until, float) for _, n, until in entries)


async def test_buffered_mode(make_harness: HarnessFactory) -> None:
    """In buffered mode too: the first up counts (pending, then committed), the next is
    answered with the pending total and counts nothing."""
    h = await make_harness(durability="buffered")
    set_clock(h, Clock())
    await unique_counter(h, DAY)
    assert (await up(h))["counted"] is True
    again = await up(h)
    assert again["counted"] is False
    assert again["up_count"] == 1
    assert h.app.services is not None
    await h.app.services.writes.flush()
    counter = await h.store.read_counter("ws", "c")
    assert counter is not None
    assert counter.up_count == 1
    assert await today_up(h) == 1


@pytest.mark.postgres
async def test_a_buffered_503_does_not_spend_the_visit(postgres_url: str) -> None:
    """Buffered: an up whose read fails (the database unreachable) is a 503 that counts
    nothing, so the visitor's next up, once the database is back, counts."""
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = postgres_url.replace(target.netloc, f"{target.username}@127.0.0.1:{proxy.port}")
    store = PostgresStore.from_url(url, node="n", call_timeout=1.0)
    await store.open()
    writes = GroupCommit(store, durability="buffered", flush_interval=0.05, retry_delay=0.05)
    writes.start(await store.register_node())
    counters = Counters(store, writes, cache_ttl=3600)
    counters.visitors = LocalVisitors(clock=Clock())
    try:
        ws = await store.create_workspace("ws", "ws")
        c = await store.create_counter(ws.id, "c")
        await store.change_counter(c.id, CounterChange(unique_window=DAY))
        visitor = (IP, AGENT.encode())
        await counters.get("ws", "c", None)  # its settings cached: the up gets to its read
        await proxy.cut()
        with pytest.raises(StorageError):
            await counters.count("ws", "c", None, 1, 0, visitor=lambda: visitor)
        await proxy.start()
        view = await counters.count("ws", "c", None, 1, 0, visitor=lambda: visitor)
        assert (view.counted, view.up_count) == (True, 1)
        again = await counters.count("ws", "c", None, 1, 0, visitor=lambda: visitor)
        assert (again.counted, again.up_count) == (False, 1)
    finally:
        await writes.stop()
        await store.close()
        await proxy.cut()


@settings_hypothesis(max_examples=200, deadline=None)
@given(
    window=st.sampled_from([HOUR, 2 * HOUR, DAY - 1, DAY, 36 * HOUR, 7 * DAY, 30 * DAY]),
    steps=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 2 * DAY)),
        min_size=1,
        max_size=60,
    ),
)
def test_the_documented_meaning_holds(window: int, steps: list[tuple[int, int, int]]) -> None:
    """Against the definition in docs/api.md: an up counts iff the visitor's last
    counted up on the counter is `window` or more seconds back (or there is none),
    whatever midnights and salt rotations lie between."""
    seen = LocalVisitors(capacity=1_000)
    last_counted: dict[tuple[int, int], float] = {}
    now = float(NOON - 3 * HOUR)
    for visitor, counter, advance in steps:
        now += advance
        expected = (visitor, counter) not in last_counted or (
            now - last_counted[(visitor, counter)] >= window
        )
        mark = seen.admit_now(counter, window, (f"10.0.0.{visitor}", b"ua"), now)
        assert (mark is not None) == expected
        if expected:
            last_counted[(visitor, counter)] = now


@pytest.mark.postgres
async def test_one_redis_call_per_up(settings: Settings, harness: Harness) -> None:
    """In scale-out an up of a unique counter costs one script call; the salts are
    fetched once per node and day."""
    if settings.redis_url is None:
        pytest.skip("no Redis with SQLite")
    clock = Clock()
    set_clock(harness, clock)
    v = visitors_of(harness)
    assert isinstance(v, RedisVisitors)
    calls = {"seen": 0, "salts": 0}

    def counting(name: str, script: Any) -> Any:
        async def call(**kw: Any) -> Any:
            calls[name] += 1
            return await script(**kw)

        return call

    v._seen = counting("seen", v._seen)
    v._salts_script = counting("salts", v._salts_script)
    await unique_counter(harness, DAY)
    for agent in ("a", "b", "a", "c", "a"):
        await up(harness, agent=agent)
    assert calls == {"seen": 5, "salts": 1}
    clock.now += DAY
    await up(harness, agent="a")
    await up(harness, agent="a")
    assert calls == {"seen": 7, "salts": 2}


async def test_answers_match_the_openapi_document(harness: Harness) -> None:
    """An up with `counted` (both ways) and a counter with `unique` validate against
    /openapi.json; so does a PATCH body that sets it."""
    doc = document()
    set_clock(harness, Clock())
    cid = await unique_counter(harness, DAY)
    for _ in range(2):
        r = await harness.client.get("/v2/ws/c/up", headers={"User-Agent": AGENT})
        check_body(doc, r, "/v2/{workspace}/{name}/up", 200)
    ws = await harness.store.get_workspace("ws")
    assert ws is not None
    admin = await harness.token(ws, Permission.ADMIN)
    body = {"unique": 7 * DAY, "unique_by": "address"}
    schema = doc["paths"]["/v2/{workspace}/-/counters/{counter_id}"]["patch"]["requestBody"]
    jsonschema.validate(
        body, {**schema["content"]["application/json"]["schema"], "components": doc["components"]}
    )
    r = await patch(harness, cid, admin, body)
    check_body(doc, r, "/v2/{workspace}/-/counters/{counter_id}", 200, "patch")
    assert r.json()["data"]["unique"] == 7 * DAY
    assert r.json()["data"]["unique_by"] == "address"
