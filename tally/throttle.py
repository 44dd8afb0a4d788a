"""Login and mail throttling: failed sign-ins counted per account and per client IP, and
emails per account.

A sliding window per key: a key that failed (or was mailed) `limit` times within
`window` seconds is refused until its oldest event leaves the window.

- `FailureWindow` keeps the windows in this process: the embedded (SQLite) server is one
  process, so that is the whole server's limit.
- `RedisFailureWindow`, with `TALLY_REDIS_URL`, keeps them in Redis (a sorted set per
  key, expiring with its window), so that every node of a cluster counts against the
  same limit instead of each its own. Keys are hashed: no email address or IP is written
  to Redis. A Redis that fails or is slow is never a reason to refuse or admit
  everyone: the node falls back to its own window until Redis answers again, and
  admits there its share of the limit (the limit over the live nodes, at least 1,
  counted from the database: tally.nodes), so the cluster's limit holds while Redis
  is away, as the rate limit's does.

Times are wall-clock seconds (`time.time()`), which every node of a cluster shares.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tally.errors import RateLimited

if TYPE_CHECKING:
    from redis import asyncio as aioredis

log = logging.getLogger("tally.throttle")


class Window(Protocol):
    """Events per key in a sliding window."""

    limit: int
    window: float

    async def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again (0: now)."""
        ...

    async def record(self, key: str, now: float) -> None:
        """One more event of `key` at `now`."""
        ...

    async def clear(self, key: str) -> None: ...


class FailureWindow:
    """The windows of this process; at most `max_keys` keys (the least recently
    started windows are dropped first, never all at once)."""

    def __init__(self, limit: int, window: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._events: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._events.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._events[key]
            return None
        return times

    async def retry_after(self, key: str, now: float) -> float:
        times = self._recent(key, now)
        if times is None or len(times) < self.limit:
            return 0.0
        return times[0] + self.window - now

    async def record(self, key: str, now: float) -> None:
        times = self._recent(key, now)
        if times is None:
            while len(self._events) >= self.max_keys:
                del self._events[next(iter(self._events))]
            times = self._events[key] = deque()
        times.append(now)
        while len(times) > self.limit:  # only the newest `limit` decide anything
            times.popleft()

    async def clear(self, key: str) -> None:
        self._events.pop(key, None)


# KEYS[1]: the key's sorted set of event times; ARGV: now, window, limit, record (0/1),
# a unique member. Drops what left the window, records the event if asked, and answers
# the seconds until the key may try again (as a string: Lua numbers become integers).
_WINDOW_SCRIPT = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -limit - 1)
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  return '0'
end
if redis.call('ZCARD', KEYS[1]) < limit then
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""


class RedisFailureWindow:
    """The windows in Redis, shared by every node; this node's own `FailureWindow` while
    Redis does not answer, holding this node's share of the limit (`nodes`: how many
    nodes are live now)."""

    def __init__(
        self,
        client: aioredis.Redis,
        limit: int,
        window: float,
        prefix: str,
        secret: bytes,
        nodes: Callable[[], int] = lambda: 1,
    ) -> None:
        self.limit = limit
        self.nodes = nodes
        self.window = window
        self.client = client
        self.prefix = prefix
        self.secret = secret
        self.local = FailureWindow(limit, window)
        self.fallbacks = 0
        self._seq = 0
        self._node = secrets.token_hex(8)  # members of two nodes never collide
        self._script = client.register_script(_WINDOW_SCRIPT)

    def _key(self, key: str) -> str:
        digest = hashlib.blake2b(key.encode(), key=self.secret[:64], digest_size=16)
        return self.prefix + digest.hexdigest()

    async def _call(self, key: str, now: float, record: bool) -> float | None:
        self._seq += 1
        member = f"{now!r}:{self._node}:{self._seq}"
        try:
            answer = await self._script(
                keys=[self._key(key)],
                args=[repr(now), repr(self.window), self.limit, "1" if record else "0", member],
            )
        except Exception as exc:  # any Redis failure: count on locally
            self.fallbacks += 1
            log.warning("throttle: Redis failed (%s); using this node's own window", exc)
            return None
        return max(0.0, float(answer))

    def _share(self) -> FailureWindow:
        """This node's own window, holding its share of the limit."""
        self.local.limit = max(1, self.limit // max(1, self.nodes()))
        return self.local

    async def retry_after(self, key: str, now: float) -> float:
        shared = await self._call(key, now, record=False)
        local = await self._share().retry_after(key, now)
        return local if shared is None else max(shared, local)

    async def record(self, key: str, now: float) -> None:
        if await self._call(key, now, record=True) is None:
            await self._share().record(key, now)

    async def clear(self, key: str) -> None:
        await self.local.clear(key)
        try:
            await self.client.delete(self._key(key))
        except Exception as exc:  # the window ends by itself
            log.warning("throttle: Redis failed (%s); the window expires by itself", exc)


class LoginThrottle:
    """5 failures per account and 20 per IP within 15 minutes, by default."""

    def __init__(self, accounts: Window, ips: Window) -> None:
        self.accounts = accounts
        self.ips = ips

    @classmethod
    def local(cls) -> LoginThrottle:
        return cls(
            FailureWindow(FAILURES_PER_ACCOUNT, LOGIN_WINDOW),
            FailureWindow(FAILURES_PER_IP, LOGIN_WINDOW),
        )

    async def check(self, email: str, ip: str, now: float) -> None:
        """RateLimited, with a message saying when to try again, if either is spent."""
        wait = max(
            await self.accounts.retry_after("a:" + email.lower(), now),
            await self.ips.retry_after("i:" + ip, now),
        )
        if wait > 0:
            minutes = max(1, math.ceil(wait / 60))
            raise RateLimited(
                "Too many failed sign-in attempts. "
                f"Try again in {minutes} minute{'s' if minutes > 1 else ''}."
            )

    async def failed(self, email: str, ip: str, now: float) -> None:
        await self.accounts.record("a:" + email.lower(), now)
        await self.ips.record("i:" + ip, now)

    async def succeeded(self, email: str) -> None:
        await self.accounts.clear("a:" + email.lower())


LOGIN_WINDOW = 15 * 60.0
FAILURES_PER_ACCOUNT = 5
FAILURES_PER_IP = 20


@dataclass
class SharedWindows:
    """The sign-in throttle and the mail window of a cluster, in Redis."""

    throttle: LoginThrottle
    mails: Window
    client: aioredis.Redis

    async def close(self) -> None:
        await self.client.aclose()


def shared_windows(
    redis_url: str,
    prefix: str,
    secret: bytes,
    mails_per_hour: int,
    mail_window: float,
    nodes: Callable[[], int] = lambda: 1,
) -> SharedWindows:
    """The sign-in throttle and the mail window, kept in Redis under `prefix`; while
    Redis is away, each node's share by `nodes` (the live nodes)."""
    from tally.storage.redis_limiter import redis_client

    client = redis_client(redis_url)

    def window(name: str, limit: int, seconds: float) -> RedisFailureWindow:
        return RedisFailureWindow(client, limit, seconds, f"{prefix}{name}:", secret, nodes)

    throttle = LoginThrottle(
        window("login-account", FAILURES_PER_ACCOUNT, LOGIN_WINDOW),
        window("login-ip", FAILURES_PER_IP, LOGIN_WINDOW),
    )
    return SharedWindows(throttle, window("mail", mails_per_hour, mail_window), client)
