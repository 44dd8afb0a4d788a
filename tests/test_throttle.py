"""The sign-in throttle and mail limits: the same sliding windows in this process and in
Redis, taken before the work (all keys or none, concurrent takes never over the limit),
one limit for every node of a cluster, hashed keys, and a Redis outage or timeout that
falls back to the node's own ledger without granting more than the limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from services import TcpProxy, require_redis

from tally.errors import RateLimited
from tally.storage.redis_limiter import redis_client
from tally.storage.redis_windows import RedisWindows, shared_windows
from tally.throttle import (
    LOGIN_ACCOUNT,
    LOGIN_CLIENT,
    Limit,
    LocalWindows,
    LoginThrottle,
    Windows,
)

SECRET = b"k" * 32
MakeWindows = Callable[[], Windows]
THREE = Limit("three", 3, 100.0)
TWO = Limit("two", 2, 60.0)


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(require_redis())
    yield c
    await c.aclose()


@pytest.fixture(params=["local", "redis"])
async def make_windows(
    request: pytest.FixtureRequest, redis_prefix: str
) -> AsyncIterator[MakeWindows]:
    clients: list[aioredis.Redis] = []

    def make() -> Windows:
        if request.param == "local":
            return LocalWindows()
        c = redis_client(require_redis())
        clients.append(c)
        return RedisWindows(c, redis_prefix, SECRET)

    yield make
    for c in clients:
        await c.aclose()


async def test_a_key_is_refused_until_its_oldest_event_leaves_the_window(
    make_windows: MakeWindows,
) -> None:
    w = make_windows()
    for t in (0.0, 10.0, 20.0):
        assert (await w.take([(THREE, "k")], t)).taken
    refused = await w.take([(THREE, "k")], 30.0)
    assert refused.refused == THREE
    assert refused.wait == pytest.approx(70.0)
    assert (await w.take([(THREE, "other")], 30.0)).taken
    later = await w.take([(THREE, "k")], 100.0)  # the event at 0 has left
    assert later.taken
    assert (await w.take([(THREE, "k")], 105.0)).wait == pytest.approx(5.0)  # now the one at 10
    await w.give_back(later)
    assert (await w.take([(THREE, "k")], 105.0)).taken
    await w.clear(THREE, "k")
    assert (await w.take([(THREE, "k")], 105.0)).taken


async def test_a_take_is_all_keys_or_none(make_windows: MakeWindows) -> None:
    """A key without room refuses the take, and the others' events are not recorded."""
    w = make_windows()
    for _ in range(2):
        assert (await w.take([(TWO, "full")], 0.0)).taken
    for _ in range(5):
        ticket = await w.take([(THREE, "free"), (TWO, "full")], 1.0)
        assert ticket.refused == TWO
        assert ticket.wait == pytest.approx(59.0)
    assert all([(await w.take([(THREE, "free")], 2.0)).taken for _ in range(3)])


async def test_concurrent_takes_never_pass_the_limit(make_windows: MakeWindows) -> None:
    """200 sign-in attempts at once for one account from one client: 5 are let through
    (LOGIN_ACCOUNT), the rest refused, before any password would be checked."""
    throttle = LoginThrottle(make_windows())

    async def attempt() -> bool:
        try:
            await throttle.attempt("ann@example.com", "198.51.100.1", 1000.0)
        except RateLimited:
            return False
        return True

    results = await asyncio.gather(*(attempt() for _ in range(200)))
    assert sum(results) == LOGIN_ACCOUNT.limit


async def test_a_success_clears_the_account_and_gives_its_attempt_back(
    make_windows: MakeWindows,
) -> None:
    throttle = LoginThrottle(make_windows())
    for i in range(4):
        await throttle.attempt("ann@example.com", "198.51.100.1", 1000.0 + i)
    ticket = await throttle.attempt("Ann@example.com", "198.51.100.1", 1004.0)
    await throttle.succeeded(ticket)
    for i in range(5):  # the account's 5 again; the client's 20 hold 4 failures
        await throttle.attempt("ann@example.com", "198.51.100.1", 1010.0 + i)
    with pytest.raises(RateLimited):
        await throttle.attempt("ann@example.com", "198.51.100.1", 1020.0)
    for i in range(LOGIN_CLIENT.limit - 9):
        await throttle.attempt(f"x{i}@example.com", "198.51.100.1", 1030.0)
    with pytest.raises(RateLimited, match="Too many failed sign-in attempts"):
        await throttle.attempt("new@example.com", "198.51.100.1", 1040.0)


async def test_the_local_windows_drop_the_oldest_keys_when_full() -> None:
    """At its bound the process's windows forget their least recent keys one at a time,
    never every key at once (which would free an account under attack)."""
    w = LocalWindows(max_keys=3)
    one = Limit("one", 1, 60.0)
    for key in ("a", "b", "c", "d"):
        await w.take([(one, key)], 0.0)
    assert (await w.take([(one, "a")], 1.0)).taken
    assert not any([(await w.take([(one, k)], 1.0)).taken for k in ("c", "d")])


async def test_every_node_counts_against_one_limit(redis_prefix: str) -> None:
    """Two nodes' throttles on one Redis: the account's 5 failures are 5 in all. (A try in
    which a Redis call timed out on the loaded test machine, so that a node decided
    alone, is repeated under fresh keys.)"""
    for attempt in range(3):
        nodes = [
            shared_windows(require_redis(), f"{redis_prefix}{attempt}:", SECRET) for _ in range(2)
        ]
        try:
            if await _five_in_all([n.throttle for n in nodes]):
                return
        finally:
            for n in nodes:
                await n.close()
    pytest.fail("Redis timed out in every try")


async def _five_in_all(throttles: list[LoginThrottle]) -> bool:
    """False if a node fell back to its own windows (Redis timed out)."""
    last = None
    for i in range(5):
        last = await throttles[i % 2].attempt("ann@example.com", f"198.51.100.{i}", 1000.0 + i)
    refused = 0
    for t in throttles:
        try:
            await t.attempt("ann@example.com", "198.51.100.99", 1010.0)
        except RateLimited:
            refused += 1
    if any(isinstance(t.windows, RedisWindows) and t.windows.fallbacks for t in throttles):
        return False
    assert refused == 2
    assert last is not None
    await throttles[0].succeeded(last)
    await throttles[1].attempt("ann@example.com", "198.51.100.99", 1011.0)
    return True


async def test_redis_holds_no_email_or_ip(redis_prefix: str, client: aioredis.Redis) -> None:
    windows = shared_windows(require_redis(), redis_prefix, SECRET)
    await windows.throttle.attempt("ann@example.com", "198.51.100.7", 1000.0)
    await windows.close()
    keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*")]
    assert len(keys) == 2
    for key in keys:
        assert b"ann" not in key
        assert b"198.51" not in key
        members = await client.zrange(key, 0, -1)
        assert all(b"ann" not in m and b"198.51" not in m for m in members)
        assert 0 < await client.ttl(key) <= 15 * 60


def _proxied(proxy: TcpProxy, prefix: str, nodes: Callable[[], int] = lambda: 1) -> RedisWindows:
    return RedisWindows(redis_client(f"redis://127.0.0.1:{proxy.port}/0"), prefix, SECRET, nodes)


async def test_a_redis_outage_falls_back_to_the_nodes_own_windows(
    redis_prefix: str, redis_proxy: TcpProxy
) -> None:
    w = _proxied(redis_proxy, redis_prefix)
    try:
        assert (await w.take([(TWO, "ann")], 0.0)).taken
        await redis_proxy.cut()
        assert (await w.take([(TWO, "ann")], 1.0)).taken  # 2 of 2, kept locally
        assert not (await w.take([(TWO, "ann")], 2.0)).taken
        assert w.fallbacks >= 2
    finally:
        await w.client.aclose()


async def test_redis_timeouts_under_a_burst_grant_no_more_than_the_limit(
    redis_prefix: str, redis_proxy: TcpProxy
) -> None:
    """Redis let 3 of the account's 5 attempts through this node, then stops answering
    (each call times out after 0.25 s) during a burst of 60, then answers again (and
    runs the held calls): 5 in all were let through, not Redis' 5 and the node's 5."""
    w = _proxied(redis_proxy, redis_prefix)
    throttle = LoginThrottle(w)

    async def attempts(n: int, now: float) -> int:
        async def one() -> bool:
            try:
                await throttle.attempt("ann@example.com", "198.51.100.1", now)
            except RateLimited:
                return False
            return True

        return sum(await asyncio.gather(*(one() for _ in range(n))))

    try:
        assert await attempts(3, 1000.0) == 3
        redis_proxy.stall()
        during = await attempts(60, 1001.0)
        assert w.fallbacks >= 1
        redis_proxy.resume()
        await asyncio.sleep(0.3)
        after = await attempts(60, 1002.0)
        assert 3 + during + after == LOGIN_ACCOUNT.limit, (during, after)
    finally:
        redis_proxy.resume()
        await w.client.aclose()


async def test_without_redis_each_live_node_keeps_its_share(
    redis_prefix: str, redis_proxy: TcpProxy
) -> None:
    """Two live nodes with Redis cut: each refuses after its half of the limit, so the
    two together allow the limit (4), not twice it; one node alone, all of it."""
    four = Limit("four", 4, 60.0)
    live = [2]
    nodes = [_proxied(redis_proxy, redis_prefix, lambda: live[0]) for _ in range(2)]
    try:
        await redis_proxy.cut()
        for node in nodes:
            for t in (1.0, 2.0):
                assert (await node.take([(four, "ann")], t)).taken
            assert not (await node.take([(four, "ann")], 3.0)).taken  # its 2 of 4 are spent
        live[0] = 1  # the other node is gone: this one may use the whole limit
        assert (await nodes[0].take([(four, "ann")], 3.0)).taken
    finally:
        for node in nodes:
            await node.client.aclose()
