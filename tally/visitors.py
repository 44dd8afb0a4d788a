"""Unique visitors: an anonymous up of a counter with a `unique_window` counts once per
visitor within that window (docs/api.md, "Unique visitors", says it for users).

What "unique" means, exactly: an up of visitor V on counter C at time t counts if and
only if no up of V on C was *counted* in (t - window, t], as far as this deployment's
seen-set remembers (it forgets at its bound, at a restart of a SQLite server, and a
Redis outage splits it per node: see below). A visitor is the triple (counter, client
key, User-Agent), the client key being the client IP, an IPv6 client's /64
(tally.web.http.client_key); on a counter counting by address alone (`unique_by`
"address", `by_address`) the pair (counter, client key). Nothing else (no cookie, no
token of another workspace) tells two visitors apart.

Nothing personal is kept. The seen-set holds `blake2b(counter | IP | User-Agent,
key=salt of the UTC day, digest_size=8)` and the time the entry stops deduplicating;
the raw IP and User-Agent are hashed and dropped in the request that brings them. Each
UTC day has a fresh random salt (`secrets.token_bytes`). A window may reach back across
midnight (it is up to 30 days), so the salts of the days it covers are kept for as
long as the longest window (MAX_WINDOW) may need them, then deleted: after that, the
hashes made with them cannot be tied to anyone. The salts live only in this process's
memory (SQLite) or in Redis (scale-out), never in the database, so a database file or
dump never holds a salt next to anything, and never a raw IP.

A check hashes the visitor once per salt day the window covers (one for most windows of
a day, at most 31 for 30 days): the visitor counts if none of those hashes is in the
set with an entry still running; then the hash under today's salt is recorded until
t + window. So the window slides exactly, across the daily rotation.

Time is `clock()` (unix seconds, UTC days), which tests replace; the Redis set stores
each entry's end in the value and compares it in its script, so tests never sleep.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("tally.visitors")

DAY = 86_400
MIN_WINDOW = 3_600
MAX_WINDOW = 30 * DAY
DEFAULT_WINDOW = DAY
# the local seen-set's default bound (TALLY_UNIQUE_CAPACITY)
DEFAULT_CAPACITY = 1_000_000
# the default bound of one counter's seen-set (TALLY_UNIQUE_PER_COUNTER)
DEFAULT_PER_COUNTER = 100_000
# after a sweep at the bound that freed too little, the oldest entries are dropped down
# to this share of the bound, so the next sweep is a tenth of the bound's inserts away
_AFTER_EVICTION = 0.9

_DURATION = re.compile(r"([0-9]{1,7})([smhd]?)")
_UNITS = {"s": 1, "": 1, "m": 60, "h": 3_600, "d": DAY}

Clock = Callable[[], float]
# what the web layer gives: (client key as the app derives it, User-Agent bytes)
Visitor = tuple[str, bytes]
# how a counter tells visitors apart (its `unique_by`): by address and User-Agent (the
# default), or by address alone, so that changing the User-Agent counts nothing more
UNIQUE_BY = ("address_agent", "address")
# the User-Agent a visitor of a counter counting by address alone is hashed with: no
# header value may hold a NUL, so it is no real User-Agent
_ANY_AGENT = b"\x00"


def by_address(visitor: Visitor) -> Visitor:
    """The visitor as a counter counting by address alone sees it."""
    return visitor[0], _ANY_AGENT


def check_window(seconds: int) -> int:
    """`seconds` if it is a window Tally accepts (0: off), else ValueError."""
    if seconds != 0 and not MIN_WINDOW <= seconds <= MAX_WINDOW:
        raise ValueError(
            f"the unique window must be from {MIN_WINDOW} s (1h) to {MAX_WINDOW} s (30d), or off"
        )
    return seconds


def parse_window(text: str) -> int:
    """A window as people write it: 'off', 'on' (24h), or N with a unit s, m, h or d
    ('36h', '7d', '3600'); ValueError if it is none of these or out of range."""
    text = text.strip().lower()
    if text in ("off", "0", "none"):
        return 0
    if text == "on":
        return DEFAULT_WINDOW
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"unknown window {text!r}: use off, on, or a duration like 24h or 7d")
    return check_window(int(match[1]) * _UNITS[match[2]])


def format_window(seconds: int) -> str:
    """A window as parse_window reads it back ('off', '24h', '36h', '7d', '90m'): in
    hours up to two days, the way `on` (24h) and the help speak of them, so a window
    typed as 24h comes back as 24h, not 1d; longer whole days in days."""
    if not seconds:
        return "off"
    if seconds % DAY == 0 and seconds > 2 * DAY:
        return f"{seconds // DAY}d"
    for unit, size in (("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def describe_window(seconds: int) -> str:
    """A window for people: its spelling and, for whole days, the other unit too, so
    that what was typed shows whichever way it was ('24h (1 day)', '7d (168 hours)',
    '36h', 'off')."""
    short = format_window(seconds)
    if not seconds or seconds % DAY:
        return short
    days, hours = seconds // DAY, seconds // 3_600
    if short.endswith("d"):
        return f"{short} ({hours} hours)"
    return f"{short} ({days} day{'s' if days > 1 else ''})"


def day_of(t: float) -> int:
    return int(t // DAY)


def salt_days(now: float, window: int) -> range:
    """The UTC days whose salts an up at `now` must look under: those of the instants
    in (now - window, now], today last."""
    return range(day_of(now - window), day_of(now) + 1)


def visitor_hash(salt: bytes, counter_id: int, visitor: Visitor) -> bytes:
    """The visitor's 8-byte keyed hash on this counter under one day's salt."""
    ip, agent = visitor
    data = b"%d\x00%b\x00%b" % (counter_id, ip.encode(), agent)
    return hashlib.blake2b(data, key=salt, digest_size=8).digest()


class Mark:
    """A counted visit's entry, so it can be taken back if the count then fails."""

    __slots__ = ("counter_id", "key", "local", "until")

    def __init__(self, counter_id: int, key: bytes, until: float, local: bool) -> None:
        self.counter_id = counter_id
        self.key = key  # the hash under the salt of the visit's day
        self.until = until
        self.local = local  # recorded in this process's set (not in Redis)


class Visitors(Protocol):
    """The seen-set of a deployment."""

    clock: Clock

    async def admit(self, counter_id: int, window: int, visitor: Visitor) -> Mark | None:
        """Record the visit and return its mark if it counts; None if the visitor was
        counted on this counter within the window."""

    async def forget(self, mark: Mark) -> None:
        """Take back a visit whose count did not happen (refused, or failed)."""

    async def close(self) -> None: ...


class DailySalts:
    """One random salt per UTC day, in memory, for the days a window may still reach
    (MAX_WINDOW back); older ones are deleted at the first use of a new day."""

    def __init__(self) -> None:
        self._salts: dict[int, bytes] = {}
        self._today = -1

    def get(self, day: int, create: bool) -> bytes | None:
        salt = self._salts.get(day)
        if salt is None and create:
            salt = self._salts[day] = secrets.token_bytes(32)
        return salt

    def rotate(self, today: int) -> None:
        """Delete the salts no window can reach any more."""
        if today == self._today:
            return
        self._today = today
        oldest = day_of(today * DAY - MAX_WINDOW)
        for day in [d for d in self._salts if d < oldest]:
            del self._salts[day]

    def days(self) -> list[int]:
        return sorted(self._salts)


class LocalVisitors:
    """The seen-set of one process (SQLite, and the fallback of the Redis one).

    Entries: per counter, the visitor hash (as an int) -> the time its window ends (a
    float), in a dict, insertion ordered. Two bounds, so that memory is bounded whatever
    arrives (a visitor per request, by changing the User-Agent each time):

    - `per_counter` entries per counter (TALLY_UNIQUE_PER_COUNTER): when a visit finds
      its counter's set full, the counter's ended windows are swept out; if that frees
      less than a tenth, its oldest visits are forgotten down to 90 % of the bound. So
      a flood on one counter forgets that counter's visitors, not other counters'.
    - `capacity` entries in all (TALLY_UNIQUE_CAPACITY): when a visit finds the whole
      set full, every ended window is swept out; if that frees less than a tenth, each
      counter's oldest visits are forgotten, in proportion to its size, down to 90 %.

    A forgotten visitor counts again at its next up: at a bound Tally counts too many,
    never too few. Nothing here survives the process."""

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        clock: Clock = time.time,
        per_counter: int = DEFAULT_PER_COUNTER,
    ) -> None:
        self.capacity = capacity
        self.per_counter = per_counter
        self.clock = clock
        self.salts = DailySalts()
        self._seen: dict[int, dict[int, float]] = {}  # counter id -> hash -> window end
        self._size = 0
        self.evicted = 0  # entries forgotten early at a bound

    def __len__(self) -> int:
        return self._size

    def entries(self) -> list[tuple[int, int, float]]:
        """Every entry as (counter id, visitor hash, window end): for tests."""
        return [(c, n, until) for c, seen in self._seen.items() for n, until in seen.items()]

    async def admit(self, counter_id: int, window: int, visitor: Visitor) -> Mark | None:
        return self.admit_now(counter_id, window, visitor, self.clock())

    def admit_now(self, counter_id: int, window: int, visitor: Visitor, now: float) -> Mark | None:
        salts = self.salts
        today = day_of(now)
        salts.rotate(today)
        seen = self._seen.get(counter_id)
        key = b""
        for day in salt_days(now, window):
            salt = salts.get(day, create=day == today)
            if salt is None:
                continue
            key = visitor_hash(salt, counter_id, visitor)
            until = seen.get(int.from_bytes(key)) if seen is not None else None
            if until is not None and until > now:
                return None
        # `key` is the hash under today's salt (the last day of the range)
        if seen is not None and len(seen) >= self.per_counter:
            self._make_room_in(counter_id, seen, now)
        if self._size >= self.capacity:
            self._make_room(now)
        seen = self._seen.setdefault(counter_id, {})
        mark = Mark(counter_id, key, float(now + window), local=True)
        number = int.from_bytes(key)
        if seen.pop(number, None) is not None:  # re-inserted at the end: recording order
            self._size -= 1
        seen[number] = mark.until
        self._size += 1
        return mark

    def _make_room_in(self, counter_id: int, seen: dict[int, float], now: float) -> None:
        """The counter's set is at its bound: drop its ended windows, then if needed its
        oldest visits, down to 90 % of the bound."""
        before = len(seen)
        for number in [n for n, until in seen.items() if until <= now]:
            del seen[number]
        keep = int(self.per_counter * _AFTER_EVICTION)
        drop = len(seen) - keep if len(seen) > keep else 0
        for number in [n for n, _ in zip(seen, range(drop), strict=False)]:
            del seen[number]
        self._size -= before - len(seen)
        if drop:
            self.evicted += drop
            log.warning(
                "unique visitors: counter %d's seen-set is full (%d); forgot its %d oldest visits",
                counter_id,
                self.per_counter,
                drop,
            )

    def _make_room(self, now: float) -> None:
        """The whole set is at its bound: drop every ended window, then if needed each
        counter's oldest visits in proportion to its size, down to 90 % of the bound."""
        for counter_id, seen in list(self._seen.items()):
            for number in [n for n, until in seen.items() if until <= now]:
                del seen[number]
            if not seen:
                del self._seen[counter_id]
        size = sum(len(seen) for seen in self._seen.values())
        keep = int(self.capacity * _AFTER_EVICTION)
        dropped = 0
        if size > keep:
            share = (size - keep) / size
            for counter_id, seen in list(self._seen.items()):
                drop = math.ceil(len(seen) * share)
                for number in [n for n, _ in zip(seen, range(drop), strict=False)]:
                    del seen[number]
                dropped += drop
                if not seen:
                    del self._seen[counter_id]
            self.evicted += dropped
            log.warning(
                "unique visitors: the seen-set is full (%d); forgot the %d oldest visits",
                self.capacity,
                dropped,
            )
        self._size = size - dropped

    async def forget(self, mark: Mark) -> None:
        number = int.from_bytes(mark.key)
        seen = self._seen.get(mark.counter_id)
        if seen is not None and seen.get(number) == mark.until:
            del seen[number]
            self._size -= 1
            if not seen:
                del self._seen[mark.counter_id]

    def clear(self) -> None:
        """Forget every visit and salt (a fallback whose Redis is back)."""
        self._seen.clear()
        self._size = 0
        self.salts = DailySalts()

    async def close(self) -> None:
        self.clear()
