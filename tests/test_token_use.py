"""Token expiry and last use in the verifier, on every backend: an expired token is
refused; the last use is written in the background, at most once a minute per token."""

from __future__ import annotations

import time

import pytest

from tally.auth import TOUCH_INTERVAL, TokenVerifier, issue_token
from tally.errors import Unauthorized
from tally.models import Permission
from tally.storage import Store

KEY = b"k" * 32


async def test_an_expired_token_is_refused(store: Store) -> None:
    """A token past its expiry is Unauthorized; one before it is accepted."""
    ws = await store.create_workspace("ws", "ws")
    old = await issue_token(store, KEY, ws.id, Permission.WRITE, "old", time.time() - 1)
    new = await issue_token(store, KEY, ws.id, Permission.WRITE, "new", time.time() + 3600)
    verifier = TokenVerifier(store, KEY)
    with pytest.raises(Unauthorized):
        await verifier.verify(f"Bearer {old.secret}".encode(), 0.0)
    token = await verifier.verify(f"Bearer {new.secret}".encode(), 0.0)
    assert token is not None
    assert token.id == new.token.id


async def test_last_use_is_written_at_most_once_a_minute(store: Store) -> None:
    """Many verifications, several cache misses within a minute: one write; a minute
    later, another."""
    ws = await store.create_workspace("ws", "ws")
    issued = await issue_token(store, KEY, ws.id, Permission.READ, "t")
    header = f"Bearer {issued.secret}".encode()
    verifier = TokenVerifier(store, KEY, ttl=1.0)

    async def last_used() -> float | None:
        await verifier.drain()
        [t] = await store.list_tokens(ws.id)
        return t.last_used_at

    for i in range(50):  # cached: no lookup, no write
        await verifier.verify(header, 100.0 + i * 0.01)
    first = await last_used()
    assert first is not None
    for step in range(2, 50, 2):  # a cache miss every 2 s, all within the minute
        await verifier.verify(header, 100.0 + step)
    assert await last_used() == first
    await verifier.verify(header, 100.0 + TOUCH_INTERVAL + 1)
    later = await last_used()
    assert later is not None
    assert later > first
