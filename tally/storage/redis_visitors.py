"""The unique-visitor seen-set shared by every node, in Redis (see tally.visitors).

Keys:

- ``{prefix}uv:salt:{day}``: the random salt of a UTC day (day = unix time // 86400),
  stored by the first node that needs it (SET NX, `salts.lua`) and expiring when no
  window can reach its day any more (its day plus MAX_WINDOW, plus a day).
- ``{prefix}uv:set:{counter id}``: the counter's counted visits, a sorted set: member
  the visitor's 8-byte hash, score the unix time its window ends. Bounded: at most
  `per_counter` entries (TALLY_UNIQUE_PER_COUNTER); ended windows are dropped at each
  recorded visit, and at the bound the windows that end soonest make room (those
  visitors count again). The key expires a little after its last window ends.

On the hot path an up costs one script call (`seen.lua`): look under the salts of the
days the window covers, record under today's, within the bound. A node fetches the salts once a day
(one more call, only when the day is new to it) and keeps them in memory.

If Redis cannot be reached, the node falls back to its own seen-set (a LocalVisitors:
its own salts, from the start of the outage), logs the switch, counts it in
`fallbacks`, and tries Redis again after `retry_after` seconds, as the rate limiter
does. During an outage each node deduplicates on its own, so a visitor may count once
on each node it reaches; the visits counted meanwhile are not in Redis, so such a
visitor may count once more when Redis is back. A Redis failure never fails a count.
"""

from __future__ import annotations

import logging
import secrets
import time
from importlib import resources

import redis.asyncio as aioredis

from tally.visitors import (
    DAY,
    DEFAULT_CAPACITY,
    DEFAULT_PER_COUNTER,
    MAX_WINDOW,
    Clock,
    LocalVisitors,
    Mark,
    Visitor,
    day_of,
    salt_days,
    visitor_hash,
)

log = logging.getLogger("tally.visitors")


def _script(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text("utf-8")


SEEN_LUA = _script("seen.lua")
SALTS_LUA = _script("salts.lua")
FORGET_LUA = _script("forget.lua")
# a salt's Redis expiry after the start of its day
SALT_TTL = DAY + MAX_WINDOW + DAY
# a seen-set's Redis expiry beyond its last window (clock differences between nodes)
ENTRY_SLACK = 60


class RedisVisitors:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "tally:",
        capacity: int = DEFAULT_CAPACITY,
        per_counter: int = DEFAULT_PER_COUNTER,
        clock: Clock = time.time,
        retry_after: float = 1.0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.per_counter = per_counter
        self.clock = clock
        self.retry_after = retry_after
        self.fallback = LocalVisitors(capacity, clock, per_counter)
        self.evicted = 0  # visits that made room at a counter's bound (forgotten)
        self.fallbacks = 0  # times this node switched to its own seen-set
        self.using_fallback = False
        self._retry_at = 0.0  # monotonic
        self._seen = client.register_script(SEEN_LUA)
        self._salts_script = client.register_script(SALTS_LUA)
        self._forget = client.register_script(FORGET_LUA)
        self._today = -1
        self._salts: dict[int, bytes | None] = {}  # day -> salt (None: that day has none)

    def salt_key(self, day: int) -> str:
        return f"{self.prefix}uv:salt:{day}"

    def set_key(self, counter_id: int) -> str:
        return f"{self.prefix}uv:set:{counter_id}"

    async def _load_salts(self, today: int) -> None:
        """The salts of today and of the days a window may reach, from Redis."""
        days = list(range(today, day_of(today * DAY - MAX_WINDOW) - 1, -1))
        keys = [self.salt_key(d) for d in days]
        fresh = secrets.token_bytes(32)
        values = await self._salts_script(keys=keys, args=[fresh, SALT_TTL])
        pairs = zip(days, values, strict=True)
        self._salts = {d: (bytes(v) if v is not None else None) for d, v in pairs}
        self._today = today

    async def admit(self, counter_id: int, window: int, visitor: Visitor) -> Mark | None:
        now = self.clock()
        if self.using_fallback and time.monotonic() < self._retry_at:
            return await self.fallback.admit(counter_id, window, visitor)
        try:
            today = day_of(now)
            if today != self._today:
                await self._load_salts(today)
            hashes: list[bytes] = []  # today's first
            for day in reversed(salt_days(now, window)):
                salt = self._salts.get(day)
                if salt is not None:
                    hashes.append(visitor_hash(salt, counter_id, visitor))
            until = now + window
            args: list[bytes | str | int] = [
                repr(now),
                repr(until),
                self.per_counter,
                window + ENTRY_SLACK,
            ]
            counted = await self._seen(keys=[self.set_key(counter_id)], args=[*args, *hashes])
        except Exception as exc:  # Redis or anything under it: deduplicate locally
            self._down(exc)
            return await self.fallback.admit(counter_id, window, visitor)
        if self.using_fallback:
            self.using_fallback = False
            self.fallback.clear()  # Redis decides again: the node's own visits are moot
            log.warning("Redis is back: unique visitors are shared by all nodes again")
        if counted == 2:
            self.evicted += 1
        return Mark(counter_id, hashes[0], until, local=False) if counted else None

    def _down(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + self.retry_after
        self._today = -1  # fetch the salts again once Redis is back
        if not self.using_fallback:
            self.using_fallback = True
            self.fallbacks += 1
            log.warning("Redis unreachable (%s): this node deduplicates visitors alone", exc)

    async def forget(self, mark: Mark) -> None:
        if mark.local:
            await self.fallback.forget(mark)
            return
        try:
            await self._forget(
                keys=[self.set_key(mark.counter_id)], args=[mark.key, repr(mark.until)]
            )
        except Exception as exc:  # best effort: the entry ends with its window anyway
            log.warning("unique visitors: could not take back a visit (%s)", exc)

    async def close(self) -> None:
        await self.fallback.close()
        await self.client.aclose()
