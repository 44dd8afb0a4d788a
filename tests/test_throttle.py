"""The sign-in throttle and mail windows: the same sliding window in this process and in
Redis, one limit for every node of a cluster, hashed keys, and a Redis outage that falls
back to the node's own window instead of refusing or admitting everyone."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from services import TcpProxy, require_redis

from tally.errors import RateLimited
from tally.storage.redis_limiter import redis_client
from tally.throttle import (
    FailureWindow,
    LoginThrottle,
    RedisFailureWindow,
    Window,
    shared_windows,
)

SECRET = b"k" * 32
MakeWindow = Callable[[int, float], Window]


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(require_redis())
    yield c
    await c.aclose()


@pytest.fixture(params=["local", "redis"])
async def make_window(
    request: pytest.FixtureRequest, redis_prefix: str
) -> AsyncIterator[MakeWindow]:
    clients: list[aioredis.Redis] = []

    def make(limit: int, seconds: float) -> Window:
        if request.param == "local":
            return FailureWindow(limit, seconds)
        c = redis_client(require_redis())
        clients.append(c)
        return RedisFailureWindow(c, limit, seconds, redis_prefix, SECRET)

    yield make
    for c in clients:
        await c.aclose()


async def test_a_key_is_refused_until_its_oldest_event_leaves_the_window(
    make_window: MakeWindow,
) -> None:
    w = make_window(3, 100.0)
    for t in (0.0, 10.0, 20.0):
        assert await w.retry_after("k", t) == 0
        await w.record("k", t)
    assert await w.retry_after("k", 30.0) == pytest.approx(70.0)
    assert await w.retry_after("other", 30.0) == 0
    assert await w.retry_after("k", 100.0) == 0  # the event at 0 has left
    await w.record("k", 100.0)
    assert await w.retry_after("k", 105.0) == pytest.approx(5.0)  # now the one at 10
    await w.clear("k")
    assert await w.retry_after("k", 105.0) == 0


async def test_many_events_keep_only_what_decides(make_window: MakeWindow) -> None:
    """A key hammered far past its limit stays refused for one window after its last
    events, and holds no more than `limit` of them."""
    w = make_window(2, 60.0)
    for i in range(200):
        await w.record("k", float(i))
    assert await w.retry_after("k", 199.0) == pytest.approx(58.0 + 1.0)
    assert await w.retry_after("k", 259.5) == 0


async def test_the_local_window_drops_the_oldest_keys_when_full() -> None:
    """At its bound the process's window forgets its least recent keys one at a time,
    never every key at once (which would free an account under attack)."""
    w = FailureWindow(1, 60.0, max_keys=3)
    for key in ("a", "b", "c", "d"):
        await w.record(key, 0.0)
    assert await w.retry_after("a", 1.0) == 0
    assert all([await w.retry_after(k, 1.0) > 0 for k in ("b", "c", "d")])


async def test_every_node_counts_against_one_limit(redis_prefix: str) -> None:
    """Two nodes' throttles on one Redis: the account's 5 failures are 5 in all."""
    nodes = [shared_windows(require_redis(), redis_prefix, SECRET, 5, 3600.0) for _ in range(2)]
    throttles = [n.throttle for n in nodes]
    for i in range(5):
        await throttles[i % 2].check("ann@example.com", f"198.51.100.{i}", 1000.0 + i)
        await throttles[i % 2].failed("ann@example.com", f"198.51.100.{i}", 1000.0 + i)
    for t in throttles:
        with pytest.raises(RateLimited):
            await t.check("ann@example.com", "198.51.100.99", 1010.0)
    await throttles[0].succeeded("Ann@example.com")
    await throttles[1].check("ann@example.com", "198.51.100.99", 1011.0)
    mails = [n.mails for n in nodes]
    for i in range(5):
        assert await mails[i % 2].retry_after("ann@example.com", 2000.0) == 0
        await mails[i % 2].record("ann@example.com", 2000.0)
    assert await mails[1].retry_after("ann@example.com", 2000.0) > 0
    for n in nodes:
        await n.close()


async def test_redis_holds_no_email_or_ip(redis_prefix: str, client: aioredis.Redis) -> None:
    windows = shared_windows(require_redis(), redis_prefix, SECRET, 5, 3600.0)
    await windows.throttle.failed("ann@example.com", "198.51.100.7", 1000.0)
    await windows.close()
    keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*")]
    assert len(keys) == 2
    for key in keys:
        assert b"ann" not in key
        assert b"198.51" not in key
        members = await client.zrange(key, 0, -1)
        assert all(b"ann" not in m and b"198.51" not in m for m in members)
        assert 0 < await client.ttl(key) <= 15 * 60


async def test_a_redis_outage_falls_back_to_the_nodes_own_window(redis_prefix: str) -> None:
    target = urlsplit(require_redis())
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    c = redis_client(f"redis://127.0.0.1:{proxy.port}/0")
    throttle = LoginThrottle(
        RedisFailureWindow(c, 2, 60.0, redis_prefix + "a:", SECRET),
        RedisFailureWindow(c, 20, 60.0, redis_prefix + "i:", SECRET),
    )
    try:
        await throttle.failed("ann@example.com", "198.51.100.1", 0.0)
        await proxy.cut()
        await throttle.check("ann@example.com", "198.51.100.1", 1.0)  # 1 of 2: no
        await throttle.failed("ann@example.com", "198.51.100.1", 1.0)  # kept locally
        await throttle.failed("ann@example.com", "198.51.100.1", 2.0)
        with pytest.raises(RateLimited):
            await throttle.check("ann@example.com", "198.51.100.1", 3.0)
        assert isinstance(throttle.accounts, RedisFailureWindow)
        assert throttle.accounts.fallbacks >= 1
    finally:
        await proxy.cut()
        await c.aclose()


async def test_without_redis_each_live_node_keeps_its_share(redis_prefix: str) -> None:
    """Two live nodes with Redis cut: each refuses after its half of the account limit,
    so the two together allow the limit (4), not twice it; one node alone, all of it."""
    target = urlsplit(require_redis())
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    c = redis_client(f"redis://127.0.0.1:{proxy.port}/0")
    live = [2]

    def window() -> RedisFailureWindow:
        return RedisFailureWindow(c, 4, 60.0, redis_prefix + "a:", SECRET, lambda: live[0])

    nodes = [window(), window()]
    try:
        await proxy.cut()
        for node in nodes:
            for t in (1.0, 2.0):
                assert await node.retry_after("a:ann", t) == 0
                await node.record("a:ann", t)
            assert await node.retry_after("a:ann", 3.0) > 0  # its 2 of 4 are spent
        live[0] = 1  # the other node is gone: this one may use the whole limit
        assert await nodes[0].retry_after("a:ann", 3.0) == 0
    finally:
        await proxy.cut()
        await c.aclose()
