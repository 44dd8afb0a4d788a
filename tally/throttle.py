"""Sign-in and mail throttling: sliding windows of events per key, taken before the work.

A `Limit` allows `limit` events per key within `window` seconds. `Windows.take` records
one event under several keys at once, or under none: either every key has room, or the
answer is a refusal saying which limit refused and when it has room again. The work
(a password check, an email) is done only after the take, so concurrent attempts cannot
all pass a check made before any of them is counted. What was taken may be given back
(`give_back`: the attempt was not made after all) or a key cleared (`clear`: a correct
password ends the account's failures).

- `LocalWindows` keeps the windows in this process: the embedded (SQLite) server is one
  process, so that is the whole server's limit.
- `tally.storage.redis_windows.RedisWindows`, with `TALLY_REDIS_URL`, keeps them in Redis,
  one script call per take, so that every node of a cluster counts against the same
  limits; a Redis that fails or is slow makes the node decide alone (its share of each
  limit), never refuse or admit everyone.

Times are wall-clock seconds (`time.time()`), which every node of a cluster shares.

The limits (docs/dashboard.md has the same):

| limit                | per                                  | events             | window |
|----------------------|--------------------------------------|--------------------|--------|
| `LOGIN_ACCOUNT`      | account (the email typed)            | failed sign-ins    | 15 min |
| `LOGIN_CLIENT`       | client address                       | failed sign-ins    | 15 min |
| `MAIL_TO`            | recipient address                    | emails             | 1 hour |
| `INVITES_BY`         | inviting account                     | invitations        | 1 hour |
| `SIGNUPS_FROM`       | client address                       | sign-ups           | 1 hour |
| `MAIL_FROM`          | client address                       | emailing requests  | 1 hour |
"""

from __future__ import annotations

import math
import secrets
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tally.errors import RateLimited


@dataclass(frozen=True, slots=True)
class Limit:
    """`limit` events per key within `window` seconds; `name` keeps its keys apart."""

    name: str
    limit: int
    window: float


LOGIN_ACCOUNT = Limit("login-account", 5, 15 * 60.0)
LOGIN_CLIENT = Limit("login-ip", 20, 15 * 60.0)
MAIL_TO = Limit("mail", 5, 3600.0)  # confirmation, reset and invitation emails to one address
INVITES_BY = Limit("invite-by", 20, 3600.0)
SIGNUPS_FROM = Limit("signup-ip", 10, 3600.0)
MAIL_FROM = Limit("mail-ip", 30, 3600.0)  # sign-ups, invitations and /forgot from one client

Want = tuple[Limit, str]  # a limit and the key it applies to


@dataclass(frozen=True, slots=True)
class Ticket:
    """What `take` answered: taken (`refused` None) with the event's `member`, or refused
    by the limit `refused`, which has room again in `wait` seconds."""

    wants: tuple[Want, ...]
    member: str
    refused: Limit | None = None
    wait: float = 0.0

    @property
    def taken(self) -> bool:
        return self.refused is None


class Windows(Protocol):
    """Sliding windows of events per (limit, key)."""

    async def take(self, wants: Sequence[Want], now: float) -> Ticket:
        """One event under every want's key if each has room; else none, refused."""
        ...

    async def give_back(self, ticket: Ticket) -> None:
        """Forget the ticket's event (it did not happen after all)."""
        ...

    async def clear(self, limit: Limit, key: str) -> None:
        """Forget every event of `key` under `limit`."""
        ...


class LocalWindows:
    """The windows of this process; at most `max_keys` keys (the least recently started
    windows are dropped first, never all at once). Its `take_now` is atomic (no await)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._events: dict[str, deque[tuple[float, str]]] = {}
        self._node = secrets.token_hex(8)
        self._seq = 0

    def member(self, now: float) -> str:
        """A name for one event, unique among every node's."""
        self._seq += 1
        return f"{now!r}:{self._node}:{self._seq}"

    def _recent(self, key: str, window: float, now: float) -> deque[tuple[float, str]] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0][0] <= now - window:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def take_now(self, wants: Sequence[Want], now: float, member: str, nodes: int = 1) -> Ticket:
        """`take`, with each limit divided among `nodes` (at least 1 event each)."""
        for limit, key in wants:
            events = self._recent(f"{limit.name}:{key}", limit.window, now)
            if events is not None and len(events) >= max(1, limit.limit // max(1, nodes)):
                wait = events[0][0] + limit.window - now
                return Ticket(tuple(wants), member, limit, wait)
        for limit, key in wants:
            name = f"{limit.name}:{key}"
            events = self._events.get(name)
            if events is None:
                while len(self._events) >= self.max_keys:
                    del self._events[next(iter(self._events))]
                events = self._events[name] = deque()
            events.append((now, member))
            while len(events) > limit.limit:  # only the newest `limit` decide anything
                events.popleft()
        return Ticket(tuple(wants), member)

    def forget(self, ticket: Ticket) -> None:
        for limit, key in ticket.wants:
            events = self._events.get(f"{limit.name}:{key}")
            if events is None:
                continue
            for event in events:
                if event[1] == ticket.member:
                    events.remove(event)
                    break
            if not events:
                del self._events[f"{limit.name}:{key}"]

    def clear_now(self, limit: Limit, key: str) -> None:
        self._events.pop(f"{limit.name}:{key}", None)

    async def take(self, wants: Sequence[Want], now: float) -> Ticket:
        return self.take_now(wants, now, self.member(now))

    async def give_back(self, ticket: Ticket) -> None:
        self.forget(ticket)

    async def clear(self, limit: Limit, key: str) -> None:
        self.clear_now(limit, key)


def refusal(ticket: Ticket, what: str) -> RateLimited:
    """The 429 for a refused ticket: `what` was refused, and when to try again."""
    minutes = max(1, math.ceil(ticket.wait / 60))
    return RateLimited(f"{what} Try again in {minutes} minute{'s' if minutes > 1 else ''}.")


@dataclass
class LoginThrottle:
    """Failed sign-ins per account and per client address (LOGIN_ACCOUNT, LOGIN_CLIENT).

    An attempt is counted before its password is checked (`attempt`); a correct password
    clears the account's failures and gives its own attempt back (`succeeded`), so only
    failures count, as the limits say."""

    windows: Windows = field(default_factory=LocalWindows)

    async def attempt(self, email: str, client: str, now: float) -> Ticket:
        """The attempt's ticket, or RateLimited if either limit is spent."""
        ticket = await self.windows.take(
            [(LOGIN_ACCOUNT, email.lower()), (LOGIN_CLIENT, client)], now
        )
        if not ticket.taken:
            raise refusal(ticket, "Too many failed sign-in attempts.")
        return ticket

    async def not_made(self, ticket: Ticket) -> None:
        """The attempt's password was never checked (the server was busy)."""
        await self.windows.give_back(ticket)

    async def succeeded(self, ticket: Ticket) -> None:
        await self.windows.give_back(ticket)
        for limit, key in ticket.wants:
            if limit is LOGIN_ACCOUNT:
                await self.windows.clear(limit, key)
