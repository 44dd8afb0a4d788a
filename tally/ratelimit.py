"""In-process rate limiting with GCRA (the generic cell rate algorithm).

A limit of N requests per period P means: a fresh key may spend all N at once, after
which capacity comes back smoothly, one request every T = P/N seconds (10/s for the
default 600 per 60 s). GCRA keeps a single number per key, its theoretical arrival time
(TAT): the instant at which the key would be back to a full burst. A request at `now` is
admitted when ``max(TAT, now) + T - now <= P`` (at most N emission intervals of backlog),
and then moves TAT forward by T. A rejected request changes nothing.

Consequence worth knowing (it follows from "burst N, then refill N/P"): if two admitted
requests of a key are W seconds apart, at most N + floor(W/T + 1e-6) requests of that key
were admitted from the first to the second (the 1e-6 is one tick plus the float rounding of
`now`, valid while now * N/P < 1e8). So a window shorter than T (less a tick) holds at most
N, but a window of one period can hold the burst plus nearly N refills: 2N - 1 with exact
arithmetic, 2N at the tick edge. Only the long-run rate is N per P.

Time is handled in integer ticks, 2**20 to an emission interval, so that every decision is
exact integer arithmetic: a burst of exactly N is admitted at any clock value (repeatedly
adding a float T would drift by a few ulps and could reject the N-th request), and the
only rounding is one float multiplication converting `now` to ticks. The reported
durations are ticks converted back to seconds, so they are accurate to a tick (under a
millionth of T) plus float rounding, and `retry_after` errs on the long side.

The limiter is not thread-safe; it is meant to be driven from one event loop thread.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Decision", "Limiter", "LocalLimiter", "MemoryRateLimiter"]

# Time resolution: ticks per emission interval. A power of two, so the tick rate is the
# cell rate times an exact scale factor.
_TICKS_PER_CELL = 1 << 20

# Idle keys examined (and dropped if expired) per hit. Two is enough to drain the idle
# prefix faster than hits can add keys (at most one per hit); see MemoryRateLimiter.
_EVICT_PER_HIT = 2


# not frozen: one per request, and a frozen dataclass builds itself four times slower
@dataclass(slots=True)
class Decision:
    """The outcome of one hit.

    `remaining` is how many more requests the key could make right now (0 when rejected);
    `reset_after` is the number of seconds until the key is back to a full burst of `limit`;
    `retry_after` is 0.0 for an admitted request, else the seconds until one more request
    would be admitted (always > 0). They map onto X-RateLimit-Remaining,
    X-RateLimit-Reset and Retry-After (round the durations up for whole-second headers).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float


class MemoryRateLimiter:
    """GCRA limiter: `limit` requests per `period` seconds per key, bursts of up to `limit`.

    Keys are any hashables (e.g. ``(path, token_id)``). `now` is the caller's monotonic
    clock in seconds and must never decrease between calls.

    Memory: keys live in an OrderedDict ordered by the last change of their TAT (an
    admitted hit, or a `hold`). Each hit or hold drops up to `_EVICT_PER_HIT` keys from
    the old end whose TAT is <= now, so idle keys are reclaimed with O(1) work per call
    and no periodic scan. Why this reaches every idle key: a change leaves TAT <= now + P,
    so a key unchanged for a full period has TAT <= now; and since keys are ordered by
    last change, those keys form a prefix of the dict, which the eviction eats from the
    front. Keys that expired
    sooner (a small backlog) wait until they reach the front, or until `sweep`.
    """

    __slots__ = (
        "_burst",
        "_limit",
        "_period",
        "_seconds_per_tick",
        "_tats",
        "_ticks_per_second",
    )

    def __init__(self, limit: int, period: float = 60.0) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if not (period > 0 and math.isfinite(period)):
            raise ValueError(f"period must be a positive number of seconds, got {period!r}")
        ticks_per_second = limit * _TICKS_PER_CELL / period
        if not 0 < ticks_per_second < math.inf:
            raise ValueError(f"period {period} is out of range for limit {limit}")
        self._limit = limit
        self._period = float(period)
        self._ticks_per_second = ticks_per_second
        self._seconds_per_tick = period / (limit * _TICKS_PER_CELL)
        # Backlog (TAT - now, in ticks) after a hit may reach N intervals, so before a hit
        # of cost c it may be at most N - c intervals for the hit to be admitted.
        self._burst = limit * _TICKS_PER_CELL
        # key -> TAT in ticks, oldest admission first.
        self._tats: OrderedDict[Hashable, int] = OrderedDict()

    @property
    def limit(self) -> int:
        """Requests per period, which is also the largest burst."""
        return self._limit

    @property
    def period(self) -> float:
        """The period in seconds."""
        return self._period

    def __len__(self) -> int:
        """The number of keys currently tracked."""
        return len(self._tats)

    def __repr__(self) -> str:
        return f"MemoryRateLimiter(limit={self._limit}, period={self._period!r})"

    def hit(self, key: Hashable, now: float, cost: int = 1) -> Decision:
        """Count one request for `key` at monotonic time `now` (seconds) and decide it.

        `cost` (1 to `limit`): cells the request takes, so the key admits limit // cost at
        once and limit / cost per period, reported as its limit. A node on its own while
        Redis is down charges each request the number of live nodes: its share.
        """
        t = int(now * self._ticks_per_second)
        self._evict(t)
        tats = self._tats
        cell = cost * _TICKS_PER_CELL
        tolerance = self._burst - cell
        tat = tats.get(key, t)
        backlog = tat - t if tat > t else 0
        if backlog > tolerance:
            # Rejected: no state change, so rejected hits never consume capacity.
            spt = self._seconds_per_tick
            limit = self._limit // cost
            return Decision(False, limit, 0, backlog * spt, (backlog - tolerance) * spt)
        backlog += cell
        tats[key] = t + backlog
        tats.move_to_end(key)
        return Decision(
            True,
            self._limit // cost,
            (self._burst - backlog) // cell,
            backlog * self._seconds_per_tick,
            0.0,
        )

    def hold(self, key: Hashable, now: float, backlog: float) -> None:
        """Raise `key`'s backlog at `now` to at least `backlog` seconds (at most the
        period): what a count kept elsewhere, the shared one in Redis, said of the key,
        so that this limiter goes on from it rather than from a fresh burst."""
        t = int(now * self._ticks_per_second)
        self._evict(t)
        tats = self._tats
        tat = t + min(int(backlog * self._ticks_per_second), self._burst)
        if tat > tats.get(key, t):
            tats[key] = tat
            tats.move_to_end(key)

    def _evict(self, t: int) -> None:
        """Drop up to `_EVICT_PER_HIT` keys from the old end whose TAT is <= `t` (ticks)."""
        # Forgetting a key whose TAT <= now is exact, not an approximation: a stored
        # TAT <= now acts exactly like no entry (max(TAT, now) == now, as for a new key),
        # and because `now` never decreases it stays <= every later `now`, so the entry
        # could never affect another decision.
        tats = self._tats
        budget = _EVICT_PER_HIT
        while budget and tats:
            oldest = next(iter(tats))
            if tats[oldest] > t:
                break
            del tats[oldest]
            budget -= 1

    def sweep(self, now: float) -> int:
        """Drop every key that is back to a full burst at `now`; return how many.

        A full scan, for tests and shutdown; `hit` already reclaims idle keys as it goes.
        """
        t = int(now * self._ticks_per_second)
        tats = self._tats
        expired = [key for key, tat in tats.items() if tat <= t]
        for key in expired:
            del tats[key]
        return len(expired)


class Limiter(Protocol):
    """What the API needs of a rate limiter (in-process, or shared through Redis)."""

    limit: int

    async def hit(self, key: Hashable, now: float) -> Decision: ...

    async def ping(self) -> None:
        """Return once the limiter's shared state answers; StorageError if it fails."""

    async def close(self) -> None: ...


class LocalLimiter:
    """The in-process limiter behind the async `Limiter` interface."""

    def __init__(self, limit: int, period: float = 60.0) -> None:
        self.memory = MemoryRateLimiter(limit, period)
        self.limit = limit

    async def hit(self, key: Hashable, now: float) -> Decision:
        # The key's hash stands for it: an int costs a third of the memory of a tuple of
        # strings and is never scanned by the garbage collector (a million idle paths
        # are a million keys for a minute). Two keys sharing a 64-bit hash would share a
        # budget; among a million live keys that has odds of about 1 in 10^7.
        return self.memory.hit(hash(key), now)

    async def ping(self) -> None:
        """In-process: always there."""

    async def close(self) -> None:
        """Nothing to release."""
