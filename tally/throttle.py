"""Login throttling: failed sign-ins counted per account and per client IP.

A sliding window per key, kept in this process: a node refuses sign-ins for a key that
failed `limit` times within `window` seconds, until the oldest failure leaves the
window. Behind several nodes each counts its own failures (a Redis-backed window would
make it one limit; the accounts' argon2 hashes keep guessing slow either way).
"""

from __future__ import annotations

import math
from collections import deque

from tally.errors import RateLimited


class FailureWindow:
    def __init__(self, limit: int, window: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again (0: now)."""
        times = self._recent(key, now)
        if times is None or len(times) < self.limit:
            return 0.0
        return times[0] + self.window - now

    def fail(self, key: str, now: float) -> None:
        times = self._recent(key, now)
        if times is None:
            if len(self._failures) >= self.max_keys:
                self._failures.clear()
            times = self._failures[key] = deque()
        times.append(now)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


class LoginThrottle:
    """5 failures per account and 20 per IP within 15 minutes, by default."""

    def __init__(self, per_account: int = 5, per_ip: int = 20, window: float = 15 * 60.0) -> None:
        self.accounts = FailureWindow(per_account, window)
        self.ips = FailureWindow(per_ip, window)

    def check(self, email: str, ip: str, now: float) -> None:
        """RateLimited, with a message saying when to try again, if either is spent."""
        wait = max(
            self.accounts.retry_after("a:" + email.lower(), now),
            self.ips.retry_after("i:" + ip, now),
        )
        if wait > 0:
            minutes = max(1, math.ceil(wait / 60))
            raise RateLimited(
                "Too many failed sign-in attempts. "
                f"Try again in {minutes} minute{'s' if minutes > 1 else ''}."
            )

    def failed(self, email: str, ip: str, now: float) -> None:
        self.accounts.fail("a:" + email.lower(), now)
        self.ips.fail("i:" + ip, now)

    def succeeded(self, email: str) -> None:
        self.accounts.clear("a:" + email.lower())
