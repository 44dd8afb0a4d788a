"""The rate limit shared through Redis: one budget across nodes, batching, fallback."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from services import TcpProxy, require_redis

from tally.storage.redis_limiter import RedisRateLimiter, redis_client

Make = Callable[..., RedisRateLimiter]
SECRET = b"redis-limiter-test-secret"


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """`make(limit, url=..., nodes=...)`: limiters on Redis under one per-test key prefix,
    each counting `nodes` live nodes."""
    url = require_redis()
    prefix = f"tally-test-{uuid.uuid4().hex[:12]}:"
    made: list[RedisRateLimiter] = []

    def factory(
        limit: int = 5, period: float = 60.0, url: str = url, nodes: int = 1
    ) -> RedisRateLimiter:
        made.append(
            RedisRateLimiter(
                redis_client(url),
                limit,
                period,
                secret=SECRET,
                prefix=prefix,
                retry_after=0.2,
                nodes=lambda: nodes,
            )
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


async def test_key_names_are_keyed_with_the_secret(make: Make) -> None:
    """The Redis key of (path, address) is no plain hash of them: without the server's
    secret, nobody who reads Redis can test a guessed IPv4 address against it."""
    limiter = make(5)
    key = (b"up", "ws", "c", "203.0.113.5")
    await limiter.hit(key, time.monotonic())
    admin = aioredis.Redis.from_url(require_redis())
    names = [k.decode() async for k in admin.scan_iter(match=f"{limiter.prefix}rl:*")]
    await admin.aclose()
    plain = hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()
    assert names == [limiter.redis_key(key)]
    assert not names[0].endswith(plain)
    other = RedisRateLimiter(limiter.client, 5, 60.0, secret=b"another", prefix=limiter.prefix)
    assert other.redis_key(key) != limiter.redis_key(key)  # the secret decides the name


async def test_unreachable_redis_falls_back_and_recovers(make: Make, redis_proxy: TcpProxy) -> None:
    """Without Redis a node limits on its own, never fails, and rejoins when Redis returns."""
    limiter = make(3, url=f"redis://127.0.0.1:{redis_proxy.port}/0")
    assert (await limiter.hit("k", time.monotonic())).allowed
    await redis_proxy.cut()
    decisions = [await limiter.hit("k", time.monotonic()) for _ in range(4)]
    # the local budget, which knows of the hit Redis admitted: no fresh burst
    assert [d.allowed for d in decisions] == [True, True, False, False]
    assert limiter.using_fallback
    assert limiter.fallbacks == 1
    await redis_proxy.start()  # the same port again
    await asyncio.sleep(0.25)  # past retry_after
    for _ in range(50):  # bounded: the client reconnects on its own
        await limiter.hit("other", time.monotonic())
        if not limiter.using_fallback:
            break
        await asyncio.sleep(0.05)
    assert not limiter.using_fallback
    fresh = await limiter.hit("fresh", time.monotonic())
    assert (fresh.allowed, fresh.remaining) == (True, 2)  # decided by Redis again
    # Redis kept only k's one earlier hit, but the node admitted k's other two alone:
    # its own count still refuses k (no extra burst on the way back)
    assert not (await limiter.hit("k", time.monotonic())).allowed


async def test_without_redis_a_node_admits_its_share(make: Make, redis_proxy: TcpProxy) -> None:
    """Alone, each of 3 live nodes admits a third of the limit, rounded down, and says
    so in its limit; with more nodes than the limit, one per period."""
    url = f"redis://127.0.0.1:{redis_proxy.port}/0"
    third, crowded = make(10, url=url, nodes=3), make(10, url=url, nodes=12)
    await redis_proxy.cut()
    now = time.monotonic()
    decisions = [await third.hit("k", now) for _ in range(4)]
    assert [(d.allowed, d.limit, d.remaining) for d in decisions] == [
        (True, 3, 2),
        (True, 3, 1),
        (True, 3, 0),
        (False, 3, 0),
    ]
    # 9 of 10 cells taken: two more back (6 s each) make room for the next 3
    assert decisions[-1].retry_after == pytest.approx(12.0, abs=0.01)
    decisions = [await crowded.hit("k", now) for _ in range(2)]
    assert [(d.allowed, d.limit) for d in decisions] == [(True, 1), (False, 1)]
    assert decisions[-1].retry_after == pytest.approx(60.0, abs=0.01)


async def test_a_node_goes_on_from_the_shared_backlog(make: Make, redis_proxy: TcpProxy) -> None:
    """A node that only saw Redis refuse a key (another node spent it) still refuses the
    key once Redis is gone: its own count was kept in step with the shared one."""
    url = f"redis://127.0.0.1:{redis_proxy.port}/0"
    a, b = make(10, url=url, nodes=2), make(10, url=url, nodes=2)
    now = time.monotonic()
    assert all([(await a.hit("k", now)).allowed for _ in range(10)])
    assert not (await b.hit("k", now)).allowed
    await redis_proxy.cut()
    # after 7 s (b's own refusal has run out) one cell is back, but a share costs two
    for node in (a, b):
        refused = await node.hit("k", now + 7.0)
        assert (refused.allowed, refused.limit) == (False, 5)
        assert node.using_fallback
    assert (await b.hit("k", now + 12.5)).allowed  # two cells back
    assert not (await b.hit("k", now + 12.5)).allowed


async def test_a_busy_key_reserves_cells_for_the_node(make: Make) -> None:
    """Several hits of a key in one call reserve a few cells more, handed out without a
    call; the remaining counts run on as if each hit had gone to Redis."""
    limiter = make(1000, period=3600.0)  # reserves up to 1000 // 200 = 5 cells
    now = time.monotonic()
    first = await asyncio.gather(limiter.hit("busy", now), limiter.hit("busy", now))
    later = [await limiter.hit("busy", time.monotonic()) for _ in range(6)]
    assert [d.remaining for d in [*first, *later]] == list(range(999, 991, -1))
    assert all(d.allowed for d in later)
    assert (limiter.batches, limiter.reserved_hits) == (2, 5)


async def test_a_single_hit_reserves_nothing(make: Make) -> None:
    """A key that is not busy goes to Redis every time: the shared state stays exact."""
    limiter = make(1000, period=3600.0)
    for expected in range(999, 994, -1):
        assert (await limiter.hit("calm", time.monotonic())).remaining == expected
    assert (limiter.batches, limiter.reserved_hits) == (5, 0)


async def test_unused_reserved_cells_are_given_back(make: Make) -> None:
    """Cells not handed out in time go back to Redis with the next call, so another node
    gets the whole rest of the budget."""
    a, b = make(200, period=3600.0), make(200, period=3600.0)  # reserves 1 cell
    now = time.monotonic()
    await asyncio.gather(a.hit("k", now), a.hit("k", now))  # 2 admitted, 1 cell reserved
    await asyncio.sleep(0.06)  # past RESERVE_SECONDS
    assert (await a.hit("k", time.monotonic())).remaining == 197  # the cell came back first
    admitted = 0
    while (await b.hit("k", time.monotonic())).allowed:
        admitted += 1
    assert admitted == 197


async def test_an_idle_node_gives_its_cells_back_by_itself(make: Make) -> None:
    """No later hit is needed to carry expired cells back: a timer sends them."""
    a, b = make(200, period=3600.0), make(200, period=3600.0)
    now = time.monotonic()
    await asyncio.gather(a.hit("k", now), a.hit("k", now))  # 2 admitted, 1 cell reserved
    await asyncio.sleep(0.1)  # a stays idle past RESERVE_SECONDS
    admitted = 0
    while (await b.hit("k", time.monotonic())).allowed:
        admitted += 1
    assert admitted == 198


async def test_no_cells_are_reserved_close_to_the_limit(make: Make) -> None:
    """With less than a tenth of the limit left, every hit is decided by Redis."""
    limiter = make(200, period=3600.0)
    for _ in range(180):  # 20 left
        assert (await limiter.hit("k", time.monotonic())).allowed
    now = time.monotonic()
    await asyncio.gather(limiter.hit("k", now), limiter.hit("k", now))
    calls = limiter.batches
    assert (await limiter.hit("k", time.monotonic())).remaining == 17
    assert (limiter.batches, limiter.reserved_hits) == (calls + 1, 0)


async def test_reservations_never_admit_more_than_the_limit(make: Make) -> None:
    """Two busy nodes on one key admit at most the limit between them, and exactly the
    limit once their reserved cells are handed out or given back."""
    a, b = make(400, period=3600.0), make(400, period=3600.0)
    admitted = 0
    for _ in range(30):
        now = time.monotonic()
        wave = await asyncio.gather(*(n.hit("hot", now) for n in (a, b) for _ in range(10)))
        admitted += sum(d.allowed for d in wave)
    assert 400 - 2 * 2 <= admitted <= 400
    assert a.reserved_hits + b.reserved_hits > 0
    await asyncio.sleep(0.06)
    for node in (a, b):
        await node.hit("elsewhere", time.monotonic())  # a call: gives expired cells back
    while (await a.hit("hot", time.monotonic())).allowed:
        admitted += 1
    assert admitted == 400


async def test_a_give_back_returns_only_cells_still_in_the_future(make: Make) -> None:
    """The script undoes a reservation exactly: never more than the cells still ahead."""
    limiter = make(10, period=3600.0)  # one cell every 360 s
    key = limiter.redis_key("direct")
    interval = 360_000_000

    async def call(*args: int) -> list[int]:
        return [int(v) for v in await limiter._script(keys=[key], args=[interval, 10, *args])]

    granted, backlog, tat = await call(5, 0, 0, 0)
    assert (granted, backlog) == (5, 0)
    _, backlog, _ = await call(0, 0, 2, tat)  # 2 of those 5 back
    assert 3 * interval - 1_000_000 < backlog <= 3 * interval
    _, backlog, _ = await call(0, 0, 2, 1)  # reserved until long ago: nothing comes back
    assert 3 * interval - 1_000_000 < backlog <= 3 * interval
    _, backlog, _ = await call(0, 0, 99, tat)  # more than is ahead: the key empties
    assert backlog == 0
    admin = aioredis.Redis.from_url(require_redis())
    assert not await admin.exists(key)
    await admin.aclose()


async def test_a_refused_key_is_refused_locally_until_its_next_cell(make: Make) -> None:
    """After Redis refuses a key, the node refuses it without a call until a cell is due,
    with the same Retry-After; then it asks Redis again."""
    limiter = make(2, period=1.0)  # a cell every 0.5 s
    now = time.monotonic()
    assert all([(await limiter.hit("over", now)).allowed for _ in range(2)])
    refused = await limiter.hit("over", time.monotonic())
    calls = limiter.batches
    again = await limiter.hit("over", time.monotonic())
    assert not refused.allowed
    assert not again.allowed
    assert (limiter.batches, limiter.blocked_hits) == (calls, 1)
    assert 0 < again.retry_after <= refused.retry_after <= 0.5
    assert again.reset_after <= refused.reset_after <= 1.0
    await asyncio.sleep(refused.retry_after + 0.01)
    assert (await limiter.hit("over", time.monotonic())).allowed
    assert limiter.batches == calls + 1


async def test_a_local_refusal_never_outlasts_redis(make: Make) -> None:
    """Another node sees the same key refused for no longer than this one blocks it."""
    a, b = make(1, period=0.3), make(1, period=0.3)
    assert (await a.hit("k", time.monotonic())).allowed
    first = await a.hit("k", time.monotonic())  # refused by Redis: a blocks the key
    assert not first.allowed
    await asyncio.sleep(first.retry_after + 0.01)
    assert (await b.hit("k", time.monotonic())).allowed  # Redis agrees it is free again
