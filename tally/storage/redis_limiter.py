"""The rate limit shared by every node: GCRA in a Redis Lua script (`gcra.lua`).

Keys: ``{prefix}rl:{digest}``, one per (action, workspace, name, token id or client
key), holding the key's theoretical arrival time; each expires when its key is back to a
full burst. The digest is keyed (blake2b with `secret`, derived from the server's secret
key, which every node of a deployment shares): someone who reads Redis cannot test a
guessed path and IPv4 address against it, as they could a plain hash.

All hits of one event-loop tick go to Redis as one script call, each distinct key once
with its number of hits (so a single Redis, or a hash-tagged prefix on a cluster: the
keys of one call must share a slot). If Redis cannot be reached, the node falls back to
its own in-process limiter, logs the switch, counts it in `fallbacks`, and tries Redis
again after `retry_after` seconds. A Redis failure never turns into an error response.

On its own, a node admits its share of the limit: each request takes as many cells of
the key's budget as there are live nodes (`nodes`, counted from the database by
tally.nodes, at most the limit), so n nodes admit limit / n each, the limit between them
(and a key admits at least one request per period on each node). Its decisions then
report limit // n as the limit, the burst the node grants. With one node it is the whole
limit, as before. The in-process limiter is kept in step with what Redis says of each
key the node asks about (the key's shared backlog, whichever node spent it), so at the
switch the nodes go on from the budget the key has left rather than from fresh bursts
(a key the node has not asked about within a period starts from the node's share). For
a period after Redis is back, the node's own count decides first and only what it
admits goes on to Redis (Redis did not see what the nodes admitted alone), so the
switch back grants no extra burst either.

A key with several hits in one call is busy on this node: the call also reserves a few
cells of its budget (see RESERVE_*), which the node hands out for the key's next hits
without a call, with the headers those hits would have had from Redis (as of the
reservation). Unused cells go back with the next call once they expire; the script
returns only what is still ahead of the key's clock, so a give-back never adds budget.
Likewise a key Redis refused is refused on this node without a call until its next cell
is due, so a client far over its limit costs Redis nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from importlib import resources
from typing import TypeVar

import redis.asyncio as aioredis

from tally.errors import StorageError
from tally.ratelimit import Decision, MemoryRateLimiter

log = logging.getLogger("tally.ratelimit")

GCRA_LUA = resources.files(__package__).joinpath("gcra.lua").read_text("utf-8")


# Reservations: when one call carries several requests of a key (so the key is busy on
# this node), the node also asks for a few cells more and hands them out itself for a
# moment, so the next requests of that key need no round trip. The cells are taken from
# the shared budget in Redis first, so reserving never admits more than the limit.
RESERVE_PER_REQUEST = 16  # cells reserved per request of the key in the call
RESERVE_SHARE = 200  # at most limit // RESERVE_SHARE cells (0.5 %): none for small limits
RESERVE_SECONDS = 0.05  # how long reserved cells may be handed out; then given back


@dataclass(slots=True)
class _Reservation:
    """Cells of one key that Redis granted to this node beyond the requests it asked for."""

    cells: int  # not handed out yet
    after_us: int  # the key's backlog after the next cell, as of the reservation
    until: float  # monotonic: no cell is handed out from then on
    granted: float  # monotonic time of the reservation
    tat: int  # the key's TAT in Redis right after the reservation (Redis clock, us)


@dataclass(slots=True)
class _Block:
    """A key Redis refused: it stays refused at least until `until` (monotonic)."""

    until: float
    reset: float  # monotonic time the key is back to a full burst, as Redis said


Timed = TypeVar("Timed", _Reservation, _Block)


def _pop_expired(entries: dict[Hashable, Timed], now: float) -> list[tuple[Hashable, Timed]]:
    """Remove and return the entries whose `until` has come, from the front of a dict
    kept in order of `until`."""
    expired = []
    for key, entry in entries.items():
        if entry.until > now:
            break
        expired.append((key, entry))
    for key, _ in expired:
        del entries[key]
    return expired


class RedisRateLimiter:
    def __init__(
        self,
        client: aioredis.Redis,
        limit: int,
        period: float,
        *,
        secret: bytes,
        prefix: str = "tally:",
        retry_after: float = 1.0,
        nodes: Callable[[], int] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """`secret`: the key of the Redis key names' hash (at most 64 bytes are used).
        `nodes`: how many live nodes share the limit, read while Redis is away (see
        tally.nodes.LiveNodes); one if not given.
        `clock`: tests only, a monotonic clock in seconds used for every decision,
        also in Redis instead of its own clock (so simulated minutes take no minutes)."""
        self.client = client
        self.limit = limit
        self.period = period
        self.prefix = prefix
        self._secret = secret[:64]
        self.retry_after = retry_after
        self.nodes = nodes or (lambda: 1)
        self.clock = clock
        self._now = clock or time.monotonic
        self.fallback = MemoryRateLimiter(limit, period)
        self.fallbacks = 0  # times this node switched to its own limiter
        self.batches = 0  # script calls sent (one per event-loop tick with hits)
        self.hits = 0  # hits those calls carried
        self.reserved_hits = 0  # hits admitted from reserved cells, without a call
        self.blocked_hits = 0  # hits refused because Redis just refused the key, no call
        self.using_fallback = False
        self._interval_us = max(1, round(period * 1_000_000 / limit))
        self._reserve_cap = limit // RESERVE_SHARE
        self._script = client.register_script(GCRA_LUA)
        self._batch: list[tuple[Hashable, asyncio.Future[Decision]]] = []
        # by time of reservation, so the expired ones are at the front
        self._reserved: dict[Hashable, _Reservation] = {}
        self._give_back: list[tuple[Hashable, int, int]] = []  # (key, cells, tat) to return
        # keys Redis refused, until their next cell is due; by time of refusal
        self._blocked: dict[Hashable, _Block] = {}
        self._retry_at = 0.0
        self._rejoined_until = 0.0  # until then this node's own count may refuse too
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiry: asyncio.TimerHandle | None = None  # gives expired cells back

    def redis_key(self, key: Hashable) -> str:
        digest = hashlib.blake2b(repr(key).encode(), key=self._secret, digest_size=16).hexdigest()
        return f"{self.prefix}rl:{digest}"

    async def hit(self, key: Hashable, now: float) -> Decision:
        own = None
        if self.using_fallback or now < self._rejoined_until:
            # This node's own count decides first: on its own, and for a period after
            # Redis is back (Redis has not seen what the nodes admitted alone). Only what
            # it admits goes on to Redis, so Redis spends no cell on a request the node
            # refuses, and a request Redis then refuses costs only this node's count.
            own = self._alone(key, now)
            if not own.allowed or (self.using_fallback and now < self._retry_at):
                return own
        reserved = self._reserved.get(key)
        if reserved is not None and reserved.cells and now < reserved.until:
            return self._stricter(own, self._from_reservation(reserved, now))
        blocked = self._blocked.get(key)
        if blocked is not None and now < blocked.until:
            self.blocked_hits += 1
            return Decision(False, self.limit, 0, blocked.reset - now, blocked.until - now)
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        if not self._batch:
            asyncio.get_running_loop().call_soon(self._send)
        self._batch.append((key, future))
        try:
            decision = await future
        except Exception as exc:  # Redis or anything under it: limit locally
            self._down(exc, now)
            return own or self._alone(key, now)
        if self.using_fallback:
            self.using_fallback = False
            self._rejoined_until = now + self.period
            log.warning("Redis is back: the rate limit is shared by all nodes again")
        return self._stricter(own, decision)

    def _alone(self, key: Hashable, now: float) -> Decision:
        """Decide on this node's own count, for its share of the limit."""
        cost = min(max(1, self.nodes()), self.limit)
        return self.fallback.hit(hash(key), now, cost)

    @staticmethod
    def _stricter(own: Decision | None, shared: Decision) -> Decision:
        """Of a request both counts admitted, the decision with less room left."""
        if own is None or not shared.allowed or shared.remaining <= own.remaining:
            return shared
        return own

    def _from_reservation(self, reserved: _Reservation, now: float) -> Decision:
        self.reserved_hits += 1
        reserved.cells -= 1
        after = reserved.after_us
        reserved.after_us += self._interval_us
        return self._admitted(after, now - reserved.granted)

    def _down(self, exc: BaseException, now: float) -> None:
        self._retry_at = now + self.retry_after
        if not self.using_fallback:
            self.using_fallback = True
            self.fallbacks += 1
            log.warning("Redis unreachable (%s): this node limits on its own for now", exc)

    def _send(self) -> None:
        batch, self._batch = self._batch, []
        give_back, self._give_back = self._give_back, []
        now = self._now()
        # a refusal expires at its key's next cell; one that lasts longer may keep
        # later ones a while (at most the period), which only costs memory
        _pop_expired(self._blocked, now)
        give_back += (
            (key, r.cells, r.tat) for key, r in _pop_expired(self._reserved, now) if r.cells
        )
        if not batch and not give_back:
            return
        task = asyncio.get_running_loop().create_task(self._run(batch, give_back, now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reserve(self, requests: int) -> int:
        """Cells to ask for beyond a key's `requests` in one call."""
        if requests < 2:
            return 0
        return min(self._reserve_cap, RESERVE_PER_REQUEST * requests)

    async def _run(
        self,
        batch: list[tuple[Hashable, asyncio.Future[Decision]]],
        give_back: list[tuple[Hashable, int, int]],
        sent: float,
    ) -> None:
        self.batches += 1
        self.hits += len(batch)
        waiting: dict[Hashable, list[asyncio.Future[Decision]]] = {}
        for key, future in batch:
            waiting.setdefault(key, []).append(future)
        args: list[int] = [self._interval_us, self.limit]
        for _, cells, tat in give_back:
            args += (0, 0, cells, tat)
        for futures in waiting.values():
            args += (len(futures), self._reserve(len(futures)), 0, 0)
        try:
            keys = [self.redis_key(k) for k, _, _ in give_back]
            keys += [self.redis_key(k) for k in waiting]
            if self.clock is not None:
                args.append(int(self.clock() * 1_000_000))
            flat = await self._script(keys=keys, args=args)
        except Exception as exc:  # any failure: the waiters fall back, never hang
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        now = self._now()
        # keep the own count in step with the shared one, but not while the nodes' own
        # counts still hold what Redis did not see (Redis is behind them then)
        in_step = not self.using_fallback and now >= self._rejoined_until
        at = 3 * len(give_back)
        for key, futures in waiting.items():
            granted, backlog, tat = int(flat[at]), int(flat[at + 1]), int(flat[at + 2])
            at += 3
            if in_step:
                after = backlog + granted * self._interval_us
                self.fallback.hold(hash(key), now, after / 1e6)
            admitted = min(granted, len(futures))
            for j, future in enumerate(futures):
                if not future.done():
                    future.set_result(self._decision(j, admitted, backlog))
            if granted > admitted:
                self._keep(key, granted - admitted, backlog, admitted, tat, now)
            elif admitted < len(futures):
                self._block(key, backlog, admitted, sent)

    def _keep(
        self, key: Hashable, cells: int, backlog: int, admitted: int, tat: int, now: float
    ) -> None:
        """Hold a key's reserved cells (the ones after its `admitted` requests)."""
        old = self._reserved.pop(key, None)
        if old is not None and old.cells:
            self._give_back.append((key, old.cells, old.tat))
        after = backlog + (admitted + 1) * self._interval_us
        self._reserved[key] = _Reservation(cells, after, now + RESERVE_SECONDS, now, tat)
        if self._expiry is None:
            self._expiry = asyncio.get_running_loop().call_later(RESERVE_SECONDS, self._expire)

    def _expire(self) -> None:
        """Give expired cells back now, even if no hit comes to carry them: an idle node
        must not sit on cells another node could use."""
        self._expiry = None
        if not self._batch:  # else the call about to go carries them
            self._send()
        if self._reserved:
            first = next(iter(self._reserved.values()))
            delay = max(0.0, first.until - self._now())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _block(self, key: Hashable, backlog: int, admitted: int, sent: float) -> None:
        """Refuse a key locally until its next cell is due: until then only another
        node giving reserved cells back (0.5 % of the limit at most) could free it.
        Timed from when the call was sent (Redis ran it later), so the block never
        outlasts the refusal Redis would give."""
        after = backlog + admitted * self._interval_us
        retry = after - self._interval_us * (self.limit - 1)
        self._blocked.pop(key, None)
        self._blocked[key] = _Block(sent + retry / 1e6, sent + after / 1e6)

    def _decision(self, j: int, admitted: int, backlog_us: int) -> Decision:
        """The decision for a key's j-th request of a call, from what the script did."""
        interval = self._interval_us
        if j < admitted:
            return self._admitted(backlog_us + (j + 1) * interval, 0.0)
        after = backlog_us + admitted * interval
        retry = after - interval * (self.limit - 1)
        return Decision(False, self.limit, 0, after / 1e6, retry / 1e6)

    def _admitted(self, after_us: int, age: float) -> Decision:
        """An admitted request whose cell left the key `after_us` of backlog, as Redis
        said `age` seconds ago."""
        remaining = (self._interval_us * self.limit - after_us) // self._interval_us
        return Decision(True, self.limit, remaining, max(0.0, after_us / 1e6 - age), 0.0)

    async def ping(self) -> None:
        """Return once Redis answers a PING; StorageError if it does not (the readiness
        check: the limiter itself falls back to this node's own limit meanwhile)."""
        try:
            await self.client.ping()
        except Exception as exc:
            raise StorageError(f"redis: {exc}") from exc

    async def close(self) -> None:
        """Wait for the calls in flight, give the reserved cells back, close the client."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for task in list(self._tasks):
            await task
        give_back = self._give_back + [
            (key, r.cells, r.tat) for key, r in self._reserved.items() if r.cells
        ]
        self._reserved.clear()
        self._give_back = []
        if give_back and not self.using_fallback:
            with contextlib.suppress(Exception):  # best effort: they expire by themselves
                await self._run([], give_back, self._now())
        await self.client.aclose()


def redis_client(url: str) -> aioredis.Redis:
    """A client that gives up fast: a slow Redis must not slow the requests down."""
    return aioredis.Redis.from_url(
        url, socket_timeout=0.25, socket_connect_timeout=0.25, health_check_interval=10
    )
