"""Dashboard passwords: argon2id hashes, and the rules a new password must meet."""

from __future__ import annotations

import asyncio
from functools import cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tally.errors import BadRequest

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


async def hash_password(password: str) -> str:
    """argon2id, off the event loop (a hash takes tens of milliseconds by design)."""
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


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
