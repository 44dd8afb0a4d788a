"""The rate limit shared by every node: GCRA in a Redis Lua script (`gcra.lua`).

Keys: ``{prefix}rl:{digest}``, one per (action, workspace, name, token id or client IP),
holding the key's theoretical arrival time; each expires when its key is back to a full
burst.

All hits of one event-loop tick go to Redis as one script call, each distinct key once
with its number of hits (so a single Redis, or a hash-tagged prefix on a cluster: the
keys of one call must share a slot). If Redis cannot be reached, the node falls back to
its own in-process limiter (so each node then admits the limit on its own), logs the
switch, counts it in `fallbacks`, and tries Redis again after `retry_after` seconds. A
Redis failure never turns into an error response.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Hashable
from importlib import resources

import redis.asyncio as aioredis

from tally.ratelimit import Decision, MemoryRateLimiter

log = logging.getLogger("tally.ratelimit")

GCRA_LUA = resources.files(__package__).joinpath("gcra.lua").read_text("utf-8")


class RedisRateLimiter:
    def __init__(
        self,
        client: aioredis.Redis,
        limit: int,
        period: float,
        *,
        prefix: str = "tally:",
        retry_after: float = 1.0,
    ) -> None:
        self.client = client
        self.limit = limit
        self.period = period
        self.prefix = prefix
        self.retry_after = retry_after
        self.fallback = MemoryRateLimiter(limit, period)
        self.fallbacks = 0  # times this node switched to its own limiter
        self.batches = 0  # script calls sent (one per event-loop tick with hits)
        self.using_fallback = False
        self._interval_us = max(1, round(period * 1_000_000 / limit))
        self._script = client.register_script(GCRA_LUA)
        self._batch: list[tuple[str, asyncio.Future[Decision]]] = []
        self._retry_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    def redis_key(self, key: Hashable) -> str:
        digest = hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()
        return f"{self.prefix}rl:{digest}"

    async def hit(self, key: Hashable, now: float) -> Decision:
        if self.using_fallback and now < self._retry_at:
            return self.fallback.hit(key, now)
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        if not self._batch:
            asyncio.get_running_loop().call_soon(self._send)
        self._batch.append((self.redis_key(key), future))
        try:
            decision = await future
        except Exception as exc:  # Redis or anything under it: limit locally
            self._down(exc, now)
            return self.fallback.hit(key, now)
        if self.using_fallback:
            self.using_fallback = False
            log.warning("Redis is back: the rate limit is shared by all nodes again")
        return decision

    def _down(self, exc: BaseException, now: float) -> None:
        self._retry_at = now + self.retry_after
        if not self.using_fallback:
            self.using_fallback = True
            self.fallbacks += 1
            log.warning("Redis unreachable (%s): this node limits on its own for now", exc)

    def _send(self) -> None:
        batch, self._batch = self._batch, []
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[str, asyncio.Future[Decision]]]) -> None:
        self.batches += 1
        waiting: dict[str, list[asyncio.Future[Decision]]] = {}
        for redis_key, future in batch:
            waiting.setdefault(redis_key, []).append(future)
        try:
            flat = await self._script(
                keys=list(waiting),
                args=(self._interval_us, self.limit, *(len(f) for f in waiting.values())),
            )
        except Exception as exc:  # any failure: the waiters fall back, never hang
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for i, futures in enumerate(waiting.values()):
            admitted, backlog = int(flat[2 * i]), int(flat[2 * i + 1])
            for j, future in enumerate(futures):
                if not future.done():
                    future.set_result(self._decision(j, admitted, backlog))

    def _decision(self, j: int, admitted: int, backlog_us: int) -> Decision:
        """The decision for a key's j-th request of a call, from what the script did."""
        interval = self._interval_us
        if j < admitted:
            after = backlog_us + (j + 1) * interval
            remaining = (interval * self.limit - after) // interval
            return Decision(True, self.limit, remaining, after / 1e6, 0.0)
        after = backlog_us + admitted * interval
        retry = after - interval * (self.limit - 1)
        return Decision(False, self.limit, 0, after / 1e6, retry / 1e6)

    async def close(self) -> None:
        for task in list(self._tasks):
            await task
        await self.client.aclose()


def redis_client(url: str) -> aioredis.Redis:
    """A client that gives up fast: a slow Redis must not slow the requests down."""
    return aioredis.Redis.from_url(
        url, socket_timeout=0.25, socket_connect_timeout=0.25, health_check_interval=10
    )
