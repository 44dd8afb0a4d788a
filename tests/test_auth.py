"""Token verification: what is looked up and what is cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from tally.auth import TokenVerifier, generate_token, issue_token
from tally.errors import Unauthorized
from tally.models import Permission
from tally.storage.sqlite import SQLiteStore

KEY = b"k" * 32


async def _verifier(tmp_path: Path) -> tuple[SQLiteStore, TokenVerifier]:
    store = SQLiteStore(tmp_path / "t.db")
    await store.open()
    return store, TokenVerifier(store, KEY)


async def test_malformed_headers_are_refused_and_never_cached(tmp_path: Path) -> None:
    """Headers that are no well-formed bearer token (here 300 KB each, all different) are
    refused without a lookup and leave the cache empty: bad tokens cannot grow memory."""
    store, verifier = await _verifier(tmp_path)
    try:
        bad = [b"Bearer tly_" + bytes([65 + i % 26]) * 300_000 + str(i).encode() for i in range(50)]
        bad += [b"Basic dXNlcjpwYXNz", b"Bearer", b"", b"Bearer tly_short", b"tly_" + b"a" * 43]
        for header in bad:
            with pytest.raises(Unauthorized):
                await verifier.verify(header, 0.0)
        assert verifier._cache == {}
    finally:
        await store.close()


async def test_well_formed_tokens_are_cached_by_the_token_alone(tmp_path: Path) -> None:
    """Padding a header differently does not make a new cache entry; each key is the
    42-byte token, and unknown well-formed tokens are cached (as refused) too."""
    store, verifier = await _verifier(tmp_path)
    try:
        ws = await store.create_workspace("ws", "ws")
        issued = await issue_token(store, KEY, ws.id, Permission.WRITE)
        for pad in range(1, 20):
            header = b"Bearer" + b" " * pad + issued.secret.encode() + b" " * pad
            token = await verifier.verify(header, 0.0)
            assert token is not None
            assert token.id == issued.token.id
        for _ in range(3):
            with pytest.raises(Unauthorized):
                await verifier.verify(b"bearer " + generate_token().encode(), 0.0)
        assert len(verifier._cache) == 4
        assert {len(key) for key in verifier._cache} == {42}
    finally:
        await store.close()


async def test_a_cached_token_in_another_spelling_is_still_checked(tmp_path: Path) -> None:
    """A cached token is found by the header's usual spelling without parsing it; any
    other spelling is parsed first, so a cached token plus junk is still refused."""
    store, verifier = await _verifier(tmp_path)
    try:
        ws = await store.create_workspace("ws", "ws")
        secret = (await issue_token(store, KEY, ws.id, Permission.WRITE)).secret.encode()
        assert await verifier.verify(b"Bearer " + secret, 0.0) is not None
        assert await verifier.verify(b"bearer  " + secret + b" ", 0.0) is not None
        for junk in (secret + b"x", secret[:-1], b"Bearer " + secret, secret + b" x"):
            with pytest.raises(Unauthorized):
                await verifier.verify(b"Bearer " + junk, 0.0)
        with pytest.raises(Unauthorized):
            await verifier.verify(b"Basic " + secret, 0.0)
        assert len(verifier._cache) == 1
    finally:
        await store.close()


async def test_the_cache_is_bounded(tmp_path: Path) -> None:
    """Distinct unknown tokens beyond max_entries evict the oldest."""
    store = SQLiteStore(tmp_path / "t.db")
    await store.open()
    try:
        verifier = TokenVerifier(store, KEY, max_entries=100)
        for _ in range(1000):
            with pytest.raises(Unauthorized):
                await verifier.verify(b"Bearer " + generate_token().encode(), 0.0)
        assert len(verifier._cache) <= 100
    finally:
        await store.close()
