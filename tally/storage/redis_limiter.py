"""The rate limit shared by every node: GCRA in a Redis Lua script (`gcra.lua`).

Keys: ``{prefix}rl:{digest}``, one per (action, workspace, name, token id or client IP),
holding the key's theoretical arrival time; each expires when its key is back to a full
burst.

All hits of one event-loop tick go to Redis as one script call (so a single Redis, or a
hash-tagged prefix on a cluster: the keys of one call must share a slot). If Redis cannot
be reached, the node falls back to its own in-process limiter (so each node then admits the limit on
its own), logs the switch, counts it in `fallbacks`, and tries Redis again after
`retry_after` seconds. A Redis failure never turns into an error response.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Hashable
from importlib import resources
from typing import Any

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
        self._batch: list[tuple[str, asyncio.Future[Any]]] = []
        self._retry_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    def redis_key(self, key: Hashable) -> str:
        digest = hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()
        return f"{self.prefix}rl:{digest}"

    async def hit(self, key: Hashable, now: float) -> Decision:
        if self.using_fallback and now < self._retry_at:
            return self.fallback.hit(key, now)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._batch:
            asyncio.get_running_loop().call_soon(self._send)
        self._batch.append((self.redis_key(key), future))
        try:
            allowed, remaining, reset_us, retry_us = await future
        except Exception as exc:  # Redis or anything under it: limit locally
            self._down(exc, now)
            return self.fallback.hit(key, now)
        if self.using_fallback:
            self.using_fallback = False
            log.warning("Redis is back: the rate limit is shared by all nodes again")
        return Decision(bool(allowed), self.limit, int(remaining), reset_us / 1e6, retry_us / 1e6)

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

    async def _run(self, batch: list[tuple[str, asyncio.Future[Any]]]) -> None:
        self.batches += 1
        try:
            flat = await self._script(
                keys=[redis_key for redis_key, _ in batch], args=(self._interval_us, self.limit)
            )
        except Exception as exc:  # any failure: the waiters fall back, never hang
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for i, (_, future) in enumerate(batch):
            if not future.done():
                future.set_result(flat[4 * i : 4 * i + 4])

    async def close(self) -> None:
        for task in list(self._tasks):
            await task
        await self.client.aclose()


def redis_client(url: str) -> aioredis.Redis:
    """A client that gives up fast: a slow Redis must not slow the requests down."""
    return aioredis.Redis.from_url(
        url, socket_timeout=0.25, socket_connect_timeout=0.25, health_check_interval=10
    )
