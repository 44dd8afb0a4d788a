"""The rate limit shared through Redis: one budget across nodes, batching, fallback."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from services import TcpProxy, require_redis

from tally.storage.redis_limiter import RedisRateLimiter, redis_client

Make = Callable[..., RedisRateLimiter]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """`make(limit, url=...)`: limiters on Redis under one per-test key prefix."""
    url = require_redis()
    prefix = f"tally-test-{uuid.uuid4().hex[:12]}:"
    made: list[RedisRateLimiter] = []

    def factory(limit: int = 5, period: float = 60.0, url: str = url) -> RedisRateLimiter:
        made.append(
            RedisRateLimiter(redis_client(url), limit, period, prefix=prefix, retry_after=0.2)
        )
        return made[-1]

    yield factory
    for limiter in made:
        await limiter.close()
    admin = aioredis.Redis.from_url(url)
    async for key in admin.scan_iter(match=f"{prefix}*"):
        await admin.delete(key)
    await admin.aclose()


async def test_one_budget_across_nodes(make: Make) -> None:
    """Two nodes on one Redis admit the limit once between them, then reject."""
    a, b = make(10), make(10)
    now = time.monotonic()
    results = [await (a if i % 2 else b).hit(("up", "ws", "c", "1.2.3.4"), now) for i in range(12)]
    assert [r.allowed for r in results] == [True] * 10 + [False] * 2
    assert [r.remaining for r in results[:10]] == list(range(9, -1, -1))
    assert 0 < results[-1].retry_after <= 6.0 + 0.01
    assert a.using_fallback is False
    assert b.using_fallback is False


async def test_keys_are_separate(make: Make) -> None:
    """Different keys have different budgets."""
    limiter = make(1)
    now = time.monotonic()
    assert (await limiter.hit(("k", 1), now)).allowed
    assert not (await limiter.hit(("k", 1), now)).allowed
    assert (await limiter.hit(("k", 2), now)).allowed


async def test_concurrent_hits_share_one_call(make: Make) -> None:
    """Hits made in one event-loop tick go to Redis together, and each gets its own answer."""
    limiter = make(50)
    now = time.monotonic()
    decisions = await asyncio.gather(*(limiter.hit("hot", now) for _ in range(60)))
    assert sum(d.allowed for d in decisions) == 50
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(50))
    assert limiter.batches <= 2


async def test_idle_keys_expire(make: Make) -> None:
    """A key's entry expires once the key is back to a full burst."""
    limiter = make(2, period=0.2)
    await limiter.hit("brief", time.monotonic())
    admin = aioredis.Redis.from_url(require_redis())
    key = limiter.redis_key("brief")
    assert await admin.exists(key)
    await asyncio.sleep(0.35)
    assert not await admin.exists(key)
    await admin.aclose()


async def test_unreachable_redis_falls_back_and_recovers(make: Make) -> None:
    """Without Redis a node limits on its own, never fails, and rejoins when Redis returns."""
    target = urlsplit(require_redis())
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    limiter = make(3, url=f"redis://127.0.0.1:{proxy.port}/0")
    assert (await limiter.hit("k", time.monotonic())).allowed
    await proxy.cut()
    decisions = [await limiter.hit("k", time.monotonic()) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]  # the local budget
    assert limiter.using_fallback
    assert limiter.fallbacks == 1
    await proxy.start()  # the same port again
    await asyncio.sleep(0.25)  # past retry_after
    for _ in range(50):  # bounded: the client reconnects on its own
        await limiter.hit("other", time.monotonic())
        if not limiter.using_fallback:
            break
        await asyncio.sleep(0.05)
    assert not limiter.using_fallback
    back = await limiter.hit("k", time.monotonic())
    assert (back.allowed, back.remaining) == (True, 1)  # Redis kept k's one earlier hit
    await proxy.cut()
