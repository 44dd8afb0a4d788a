"""Rate-limit accuracy over simulated minutes (a clock the test moves, nothing slept).

A key driven at twice its limit (600 a minute) from the start: after the first minute,
which also spends the fresh key's burst of 600, each minute admits 600 within 1 %, on
one node (in-process, or through Redis), across two nodes sharing Redis, and on a node
whose Redis goes away (it fails over to its own limiter, kept in step with what it
admitted, so the key gets no fresh burst).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from services import TcpProxy, require_redis

from tally.ratelimit import Limiter, LocalLimiter
from tally.storage.redis_limiter import RedisRateLimiter, redis_client

LIMIT = 600
PERIOD = 60.0
STEP = 0.05  # a request of the key every 50 ms on each node: 20/s, twice the limit
T0 = 10_000.0
MINUTES = 3  # a warm-up minute, then the two measured ones


class Clock:
    """Monotonic seconds that only the test moves."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


async def drive(
    clock: Clock,
    nodes: list[Limiter],
    *,
    per_step: int = 1,
    at: Callable[[float], object] | None = None,
) -> list[int]:
    """Hit one key on every node every STEP for MINUTES simulated minutes (`per_step`
    hits at once per node); admitted hits per minute. `at(t)` runs before each step."""
    admitted = [0] * MINUTES
    steps = round(MINUTES * PERIOD / STEP)
    for i in range(steps):
        t = i * STEP
        clock.now = T0 + t
        if at is not None:
            done = at(t)
            if asyncio.iscoroutine(done):
                await done
        hits = [
            node.hit(("up", "ws", "c", "tok"), clock.now) for node in nodes for _ in range(per_step)
        ]
        decisions = await asyncio.gather(*hits)
        admitted[int(t // PERIOD)] += sum(d.allowed for d in decisions)
    return admitted


def assert_accurate(admitted: list[int]) -> None:
    first, *measured = admitted
    assert LIMIT <= first <= 2 * LIMIT + 6, admitted  # the burst, plus a minute of refill
    for count in measured:
        assert abs(count - LIMIT) <= LIMIT // 100, admitted  # within 1 %


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., RedisRateLimiter]]:
    """`make(clock, url=...)`: Redis limiters of 600 a minute under a per-test prefix."""
    url = require_redis()
    prefix = f"tally-test-{uuid.uuid4().hex[:12]}:"
    made: list[RedisRateLimiter] = []

    def factory(clock: Clock, url: str = url) -> RedisRateLimiter:
        limiter = RedisRateLimiter(
            redis_client(url), LIMIT, PERIOD, prefix=prefix, retry_after=1.0, clock=clock
        )
        made.append(limiter)
        return limiter

    yield factory
    for limiter in made:
        await limiter.close()
    admin = aioredis.Redis.from_url(url)
    async for key in admin.scan_iter(match=f"{prefix}*"):
        await admin.delete(key)
    await admin.aclose()


async def test_one_node_in_process() -> None:
    """The in-process limiter: 600 a minute within 1 %."""
    clock = Clock()
    assert_accurate(await drive(clock, [LocalLimiter(LIMIT, PERIOD)]))


async def test_one_node_through_redis(make: Callable[..., RedisRateLimiter]) -> None:
    """One node on Redis (the script on the test's clock): 600 a minute within 1 %."""
    clock = Clock()
    node = make(clock)
    assert_accurate(await drive(clock, [node]))
    assert not node.using_fallback


async def test_two_nodes_share_one_budget(make: Callable[..., RedisRateLimiter]) -> None:
    """Two nodes, each sending its hits of a step together (one script call each):
    600 a minute within 1 % between them."""
    clock = Clock()
    a, b = make(clock), make(clock)
    assert_accurate(await drive(clock, [a, b], per_step=3))
    for node in (a, b):
        assert node.batches < node.hits  # several hits per call
        assert not node.using_fallback


@pytest.mark.parametrize("back_at", [None, 125.0], ids=["gone", "gone-and-back"])
async def test_a_node_that_loses_redis_stays_accurate(
    make: Callable[..., RedisRateLimiter], back_at: float | None
) -> None:
    """Redis goes away in the middle of a measured minute (and comes back 35 s later):
    the node limits on its own, going on from the backlog it gave the key, and back on
    Redis its own count still holds for a period, so each minute is 600 within 1 %."""
    target = urlsplit(require_redis())
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    clock = Clock()
    node = make(clock, url=f"redis://127.0.0.1:{proxy.port}/0")

    async def outage(t: float) -> None:
        if abs(t - 90.0) < STEP / 2:
            await proxy.cut()
        if back_at is not None and abs(t - back_at) < STEP / 2:
            await proxy.start()

    try:
        assert_accurate(await drive(clock, [node], at=outage))
    finally:
        await proxy.cut()
    assert node.fallbacks == 1
    assert node.using_fallback is (back_at is None)
