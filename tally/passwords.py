"""Dashboard passwords: argon2id hashes, and the rules a new password must meet.

Hashing and checking cost about 0.15 s of CPU and 64 MiB each, by design. They run on a
few threads of their own (`CHECKS_IN_FLIGHT`, half the CPUs, at least 2), at a lower CPU
priority than the event loop (nice +10, where the system allows it), so a flood of
sign-ins cannot take the CPU from the API. One more than that at a time is refused at
once with `PasswordsBusy` (503), without hashing anything: an attacker's flood waits in
no queue and costs no memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib import resources
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tally.errors import BadRequest, Unavailable

MIN_LENGTH = 10
MAX_LENGTH = 256
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


@cache
def common_passwords() -> frozenset[str]:
    text = resources.files("tally").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line and not line.startswith("#")
    )


def check_new_password(password: str, email: str = "") -> str:
    """The password, or BadRequest saying why it is too weak."""
    if len(password) < MIN_LENGTH:
        raise BadRequest(f"The password must be at least {MIN_LENGTH} characters long.")
    if len(password) > MAX_LENGTH:
        raise BadRequest(f"The password must be at most {MAX_LENGTH} characters long.")
    low = password.lower()
    if low in common_passwords() or len(set(low)) < 4:
        raise BadRequest("This password is too common. Choose one that is harder to guess.")
    if email and low in (email.lower(), email.lower().split("@", 1)[0]):
        raise BadRequest("The password must not be your email address.")
    return password


T = TypeVar("T")
CHECKS_IN_FLIGHT = max(2, (os.cpu_count() or 2) // 2)
NICE = 10  # the hashing threads' CPU priority, below the event loop's


class PasswordsBusy(Unavailable):
    default_message = "The server is busy checking other passwords. Try again in a moment."


def _lower_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):  # Linux: the calling thread only
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


class PasswordWork:
    """The node's password hashing: at most `limit` at a time, the rest refused; counted
    for /metrics. `in_flight` counts a hash until its thread is done with it, even if
    the request that asked for it went away."""

    def __init__(self, limit: int = CHECKS_IN_FLIGHT) -> None:
        self.limit = limit
        self.in_flight = 0
        self.verifications = 0  # passwords checked against a hash
        self.hashes = 0  # new hashes made
        self.busy = 0  # refused: `limit` were in flight
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    async def run(self, work: Callable[[], T], *, verification: bool) -> T:
        """`work` on a password thread, counted as a verification or a hash."""
        with self._lock:
            if self.in_flight >= self.limit:
                self.busy += 1
                raise PasswordsBusy()
            self.in_flight += 1
            if verification:
                self.verifications += 1
            else:
                self.hashes += 1
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.limit, thread_name_prefix="tally-password", initializer=_lower_priority
                )
        future = self._pool.submit(work)
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def _done(self, future: object) -> None:
        with self._lock:
            self.in_flight -= 1


work = PasswordWork()


async def hash_password(password: str) -> str:
    """argon2id, on the password threads (PasswordsBusy if they are all busy)."""
    return await work.run(lambda: _hasher.hash(password), verification=False)


async def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` is the hash's, on the password threads (PasswordsBusy, before
    any hashing, if they are all busy)."""

    def check() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await work.run(check, verification=True)


def needs_rehash(password_hash: str) -> bool:
    """True if the hash was made with other parameters (or another variant) than today's:
    the next successful login stores a new one (tally.accounts.Accounts.log_in)."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


_dummy: str | None = None


async def dummy_hash() -> str:
    """A hash to check a password against when there is no such account, so a sign-in
    takes as long either way. Made on first use, off the event loop: made at import, it
    cost every admin command and every server start a hash."""
    global _dummy
    if _dummy is None:
        _dummy = await asyncio.to_thread(_hasher.hash, "tally: no such account")
    return _dummy
