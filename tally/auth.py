"""API tokens: issued once, stored only as a keyed hash, verified with a short-lived cache.

A token issued today reads ``tly_``, 32 random base62 characters (190 bits) and a 6
character checksum: the CRC32 of the 32 random characters, in base62, zero-padded. A
secret scanner finds it offline with ``tly_[A-Za-z0-9]{38}`` and checks the checksum
to drop false positives (docs/security.md). Tokens issued before read ``tly_`` and 43
URL-safe base64 characters (no checksum); they keep working. A token with the new length
and a wrong checksum is refused before any lookup.

The store keeps HMAC-SHA256(secret_key, token) and the first characters for display, so a
leaked database does not leak usable tokens, and a lookup is one indexed equality on a
keyed hash (an attacker who times it learns nothing about a hash they cannot compute).
Passwords (for the dashboard) are a different matter and use argon2; tokens are random
enough that a fast keyed hash is the right tool.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
import zlib
from dataclasses import dataclass

from tally.errors import Unauthorized
from tally.models import Permission, Token
from tally.storage.base import Store

TOKEN_PREFIX = "tly_"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_CHARS = 32  # 62**32 > 2**190
CHECKSUM_CHARS = 6  # 62**6 > 2**32: a CRC32 always fits
# what a scanner looks for: the current format, and the one before it (no checksum)
TOKEN_PATTERN = r"tly_[A-Za-z0-9]{38}"
LEGACY_TOKEN_PATTERN = r"tly_[A-Za-z0-9_-]{43}"
_TOKEN_RE = re.compile(rb"tly_[A-Za-z0-9]{38}")
_LEGACY_TOKEN_RE = re.compile(rb"tly_[A-Za-z0-9_-]{43}")
_DISPLAY_CHARS = 8
TOUCH_INTERVAL = 60.0  # seconds: a token's last use is written at most this often
log = logging.getLogger("tally.auth")


def checksum(random_part: str | bytes) -> str:
    """The 6 base62 characters that end a token: CRC32 of its random part, zero-padded."""
    raw = random_part.encode() if isinstance(random_part, str) else random_part
    n = zlib.crc32(raw)
    digits = []
    for _ in range(CHECKSUM_CHARS):
        n, digit = divmod(n, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def generate_token() -> str:
    random_part = "".join(secrets.choice(BASE62) for _ in range(RANDOM_CHARS))
    return TOKEN_PREFIX + random_part + checksum(random_part)


def well_formed(token: bytes) -> bool:
    """A token of the current format with a right checksum, or of the legacy format.

    Nothing here is secret (the checksum is public arithmetic): it only spares the store
    a lookup of what cannot be a token."""
    if _TOKEN_RE.fullmatch(token):
        start = len(TOKEN_PREFIX)
        random_part, given = token[start : start + RANDOM_CHARS], token[start + RANDOM_CHARS :]
        return hmac.compare_digest(checksum(random_part).encode(), given)
    return _LEGACY_TOKEN_RE.fullmatch(token) is not None


def display_prefix(token: str) -> str:
    """What lists show of a token: enough to recognise it, useless to an attacker."""
    return token[: len(TOKEN_PREFIX) + _DISPLAY_CHARS]


def hash_token(key: bytes, token: str | bytes) -> str:
    raw = token.encode() if isinstance(token, str) else token
    return hmac.new(key, raw, hashlib.sha256).hexdigest()


def derive_key(key: bytes, purpose: bytes) -> bytes:
    """A key of its own for one use of the server's secret key (the rate limit's Redis
    key names, ...): knowing it reveals neither the secret key nor another use's key."""
    return hmac.new(key, b"tally:" + purpose, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token: `secret` is shown once and never stored."""

    token: Token
    secret: str


async def issue_token(
    store: Store,
    key: bytes,
    workspace_id: int,
    permission: Permission,
    name: str = "",
    expires_at: float | None = None,
    created_by: int | None = None,
) -> IssuedToken:
    """A new token; `created_by`: the account that made it on the dashboard (None: the
    operator or the management API)."""
    secret = generate_token()
    token = await store.create_token(
        workspace_id,
        name,
        display_prefix(secret),
        hash_token(key, secret),
        permission,
        expires_at,
        created_by=created_by,
    )
    return IssuedToken(token, secret)


class TokenVerifier:
    """Turns an Authorization header into a Token (or None for anonymous).

    A header that is not ``Bearer`` and a well-formed token (`well_formed`: the current
    format with its checksum right, or the legacy one) is refused at once: never looked
    up, never cached. Well-formed tokens, verified or rejected, are cached for `ttl`
    seconds keyed by the token itself (42 or 47 bytes, whatever padding the header had), so a
    hot client sending ``Bearer <token>`` costs one dict lookup (other spellings a parse
    more), and the cache's memory is bounded by `max_entries` fixed-size keys. `ttl`
    bounds how long a revocation or an expiry takes to bite. The oldest entries go first.

    A token's last use is written on a cache miss, at most once per TOUCH_INTERVAL per
    token and in the background: never on the request's path, never on every request.
    """

    def __init__(self, store: Store, key: bytes, ttl: float = 1.0, max_entries: int = 10_000):
        self.store = store
        self.key = key
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[bytes, tuple[float, Token | None]] = {}
        self._touched: dict[int, float] = {}  # token id -> monotonic time last written
        self._touches: set[asyncio.Task[None]] = set()

    async def verify(self, header: bytes | None, now: float) -> Token | None:
        """`now` is a monotonic clock. Raises Unauthorized for a bad or revoked token."""
        if header is None:
            return None
        # the usual spelling is looked up before it is parsed: only well-formed tokens
        # are ever cached, so a hit needs no check of the token's form and checksum
        value = header[7:] if header.startswith(b"Bearer ") else b""
        hit = self._cache.get(value)
        if hit is None:
            parsed = bearer_token(header)
            if parsed is None:
                raise Unauthorized()
            value = parsed
            hit = self._cache.get(value)
        if hit is not None and hit[0] > now:
            token = hit[1]
        else:
            token = await self._lookup(value)
            cache = self._cache
            if len(cache) >= self.max_entries:
                for stale in list(cache)[: self.max_entries // 10 or 1]:
                    del cache[stale]
            cache.pop(value, None)
            cache[value] = (now + self.ttl, token)
            if token is not None and now - self._touched.get(token.id, -TOUCH_INTERVAL) >= (
                TOUCH_INTERVAL
            ):
                self._touch(token.id, now)
        if token is None:
            raise Unauthorized()
        return token

    async def _lookup(self, value: bytes) -> Token | None:
        token = await self.store.find_token(hash_token(self.key, value))
        if token is None or not token.usable(time.time()):
            return None
        return token

    def _touch(self, token_id: int, now: float) -> None:
        if len(self._touched) >= self.max_entries:
            self._touched.clear()
        self._touched[token_id] = now
        task = asyncio.get_running_loop().create_task(self._write_last_use(token_id))
        self._touches.add(task)
        task.add_done_callback(self._touches.discard)

    async def _write_last_use(self, token_id: int) -> None:
        try:
            await self.store.touch_token(token_id, time.time())
        except Exception as exc:  # a lost last-use stamp must never fail a request
            log.warning("could not record the last use of token %d: %s", token_id, exc)

    async def drain(self) -> None:
        """Wait for the last-use writes in flight (before the store closes)."""
        if self._touches:
            await asyncio.gather(*self._touches, return_exceptions=True)


def bearer_token(header: bytes) -> bytes | None:
    """The token of a well-formed ``Bearer tly_...`` header, else None."""
    scheme, _, value = header.strip().partition(b" ")
    value = value.strip()
    if scheme.lower() != b"bearer" or not well_formed(value):
        return None
    return value
