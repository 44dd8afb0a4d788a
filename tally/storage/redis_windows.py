"""The sign-in throttle's and the mail limits' windows in Redis (tally.throttle), shared
by every node: one script call (`windows.lua`) takes an event under all of its keys or
none.

Keys: ``{prefix}{limit name}:{digest}``, a sorted set of event times per key, expiring
with its window. Keys are keyed hashes (BLAKE2b under the throttle's secret): no email
address or IP is written to Redis.

The node also keeps its own `LocalWindows`, a ledger of every event it let through:

- when Redis answers, an event Redis took is let through only if the ledger has room
  under the whole limit too (it always has, unless Redis lost what it held), and is
  recorded there;
- when Redis fails or is slow (the client gives up after 0.25 s), the ledger alone
  decides, with this node's share of each limit (the limit over the live nodes, at
  least 1, counted from the database: tally.nodes).

So a node never lets through more than a limit's events of a key, whichever way each
was decided: a call that timed out after Redis recorded it, then decided by the ledger,
is still one event, and the ledger's share is not granted on top of what Redis already
let through this node.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import redis.asyncio as aioredis

from tally.storage.redis_limiter import redis_client
from tally.throttle import Limit, LocalWindows, LoginThrottle, Ticket, Want

log = logging.getLogger("tally.throttle")

WINDOWS_LUA = resources.files(__package__).joinpath("windows.lua").read_text("utf-8")


class RedisWindows:
    """`tally.throttle.Windows` in Redis, with this node's ledger (see the module doc)."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        secret: bytes,
        nodes: Callable[[], int] = lambda: 1,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.secret = secret
        self.nodes = nodes
        self.local = LocalWindows()
        self.fallbacks = 0  # takes decided by the node alone (Redis failed or was slow)
        self._script = client.register_script(WINDOWS_LUA)

    def key(self, limit: Limit, key: str) -> str:
        digest = hashlib.blake2b(key.encode(), key=self.secret[:64], digest_size=16)
        return f"{self.prefix}{limit.name}:{digest.hexdigest()}"

    async def take(self, wants: Sequence[Want], now: float) -> Ticket:
        member = self.local.member(now)
        args: list[str | int] = [repr(now), member]
        for limit, _ in wants:
            args += [limit.limit, repr(limit.window)]
        try:
            wait, index = await self._script(keys=[self.key(*w) for w in wants], args=args)
        except Exception as exc:  # any Redis failure: the node decides alone
            self.fallbacks += 1
            log.warning("throttle: Redis failed (%s); using this node's own windows", exc)
            return self.local.take_now(wants, now, member, max(1, self.nodes()))
        if int(index):
            return Ticket(tuple(wants), member, wants[int(index) - 1][0], float(wait))
        ticket = self.local.take_now(wants, now, member)
        if not ticket.taken:  # the ledger is full: Redis lost events; keep Redis' count right
            await self._forget(ticket)
        return ticket

    async def give_back(self, ticket: Ticket) -> None:
        self.local.forget(ticket)
        await self._forget(ticket)

    async def _forget(self, ticket: Ticket) -> None:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for want in ticket.wants:
                    pipe.zrem(self.key(*want), ticket.member)
                await pipe.execute()
        except Exception as exc:  # the event leaves the window by itself
            log.warning("throttle: Redis failed (%s); the event expires by itself", exc)

    async def clear(self, limit: Limit, key: str) -> None:
        self.local.clear_now(limit, key)
        try:
            await self.client.delete(self.key(limit, key))
        except Exception as exc:  # the window ends by itself
            log.warning("throttle: Redis failed (%s); the window expires by itself", exc)


@dataclass
class SharedWindows:
    """The windows of a cluster in Redis, and the sign-in throttle over them."""

    windows: RedisWindows
    throttle: LoginThrottle
    client: aioredis.Redis

    async def close(self) -> None:
        await self.client.aclose()


def shared_windows(
    redis_url: str, prefix: str, secret: bytes, nodes: Callable[[], int] = lambda: 1
) -> SharedWindows:
    """The windows, kept in Redis under `prefix`; while Redis is away, each node's share
    by `nodes` (the live nodes)."""
    client = redis_client(redis_url)
    windows = RedisWindows(client, prefix, secret, nodes)
    return SharedWindows(windows, LoginThrottle(windows), client)
