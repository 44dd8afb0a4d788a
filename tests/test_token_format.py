"""The API token format: a prefix and a checksum a secret scanner can check offline, and the
tokens of the earlier format still accepted (docs/security.md#api-tokens)."""

from __future__ import annotations

import re
import secrets
import zlib
from dataclasses import astuple
from pathlib import Path
from typing import Any

import pytest
from conftest import Harness
from helpers import assert_error
from hypothesis import given
from hypothesis import strategies as st

from tally.auth import (
    BASE62,
    LEGACY_TOKEN_PATTERN,
    TOKEN_PATTERN,
    checksum,
    generate_token,
    hash_token,
    well_formed,
)
from tally.models import Permission
from tally.web.app import load_secret_key

SCANNER = re.compile(rf"\b{TOKEN_PATTERN}\b")


def base62_decode(text: str) -> int:
    n = 0
    for char in text:
        n = n * 62 + BASE62.index(char)
    return n


def test_a_new_token_has_the_prefix_and_a_crc32_checksum() -> None:
    """tly_ + 32 base62 random characters + the CRC32 of them in 6 base62 characters; the
    documented scanner pattern finds it inside other text."""
    for _ in range(200):
        token = generate_token()
        assert len(token) == 42
        assert re.fullmatch(TOKEN_PATTERN, token)
        random_part, check = token[4:36], token[36:]
        assert base62_decode(check) == zlib.crc32(random_part.encode())
        assert SCANNER.findall(f"export TALLY_TOKEN={token}; curl ...") == [token]
        assert well_formed(token.encode())


@given(st.binary(max_size=40))
def test_the_checksum_is_six_base62_digits_of_the_crc32(data: bytes) -> None:
    """Any CRC32 fits, zero-padded, in the 6 characters (62**6 > 2**32)."""
    check = checksum(data)
    assert len(check) == 6
    assert set(check) <= set(BASE62)
    assert base62_decode(check) == zlib.crc32(data)


def test_a_wrong_checksum_is_not_well_formed() -> None:
    """Changing any one character of a token breaks its checksum (CRC32 catches every
    single-character change)."""
    token = generate_token()
    for i in range(4, len(token)):
        for other in ("0", "z"):
            if token[i] != other:
                changed = token[:i] + other + token[i + 1 :]
                assert not well_formed(changed.encode()), (token, changed)


def test_legacy_tokens_are_well_formed() -> None:
    """The earlier format (tly_ + 43 URL-safe base64 characters) is still accepted."""
    for _ in range(50):
        legacy = "tly_" + secrets.token_urlsafe(32)
        assert re.fullmatch(LEGACY_TOKEN_PATTERN, legacy)
        assert well_formed(legacy.encode())
    assert not well_formed(b"tly_" + b"A" * 42)  # neither length
    assert not well_formed(b"tly_" + b"A" * 44)
    assert not well_formed(b"tly_" + b"A" * 37 + b"-")  # new length, legacy alphabet


async def test_new_and_legacy_tokens_both_work(harness: Harness) -> None:
    """A token issued today and one stored in the earlier format (as a database from before
    this change holds it) both authenticate; each is refused once revoked."""
    h = harness
    ws = await h.workspace("ws")
    await h.counter(ws, "c", private=True)
    new = await h.token(ws, Permission.WRITE)
    assert re.fullmatch(TOKEN_PATTERN, new)
    legacy = "tly_" + secrets.token_urlsafe(32)
    key = await load_secret_key(h.store, h.app.settings)
    stored = await h.store.create_token(
        ws.id, "old", legacy[:12], hash_token(key, legacy), Permission.WRITE
    )
    for token in (new, legacy):
        r = await h.get("/v2/ws/c/up", token)
        assert r.status_code == 200, r.text
    counter = await h.store.read_counter("ws", "c")
    assert counter is not None
    assert counter.up_count == 2
    await h.store.revoke_token(stored.id)
    h.app.services.verifier._cache.clear()  # type: ignore[union-attr]
    assert_error(await h.get("/v2/ws/c", legacy), 401)


@pytest.mark.parametrize("where", ["random", "checksum"])
async def test_a_bad_checksum_is_refused_before_any_lookup(harness: Harness, where: str) -> None:
    """A token of the new length whose checksum is wrong is a 401 and the store is never
    asked (nor the cache filled); a real token still is looked up."""
    h = harness
    ws = await h.workspace("ws")
    await h.counter(ws, "c")
    real = await h.token(ws, Permission.WRITE)
    services = h.app.services
    assert services is not None
    verifier = services.verifier
    lookups: list[str] = []
    find_token = verifier.store.find_token

    async def counting(token_hash: str):  # type: ignore[no-untyped-def]
        lookups.append(token_hash)
        return await find_token(token_hash)

    verifier.store.find_token = counting  # type: ignore[method-assign]
    if where == "random":
        bad = real[:10] + ("A" if real[10] != "A" else "B") + real[11:]
    else:
        bad = real[:-1] + ("A" if real[-1] != "A" else "B")
    for _ in range(3):
        assert_error(await h.get("/v2/ws/c/up", bad), 401)
    assert lookups == []
    assert bad.encode() not in verifier._cache
    assert (await h.get("/v2/ws/c/up", real)).status_code == 200
    assert len(lookups) == 1
    counter = await h.store.read_counter("ws", "c")
    assert counter is not None
    assert counter.up_count == 1


async def test_the_store_keeps_no_token_secret(harness: Harness) -> None:
    """What the store holds of a token is its keyed hash and a 12-character prefix: the
    secret itself finds nothing, its HMAC finds the token, no field holds the secret."""
    h = harness
    ws = await h.workspace("ws")
    secret = await h.token(ws, Permission.ADMIN)
    key = await load_secret_key(h.store, h.app.settings)
    assert await h.store.find_token(secret) is None
    token = await h.store.find_token(hash_token(key, secret))
    assert token is not None
    assert token.prefix == secret[:12]
    assert all(secret not in str(value) for value in astuple(token))
    listed = await h.store.list_tokens(ws.id)
    assert all(secret not in str(value) for t in listed for value in astuple(t))


def test_the_documented_scanner_check_is_right() -> None:
    """The Python check docs/security.md gives scanners accepts issued tokens and refuses
    a changed one; its regular expressions are the ones tally.auth uses."""
    doc = (Path(__file__).parent.parent / "docs" / "security.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    is_tally_token = namespace["is_tally_token"]
    for _ in range(100):
        token = generate_token()
        assert is_tally_token(token)
        assert not is_tally_token(token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert not is_tally_token("tly_" + secrets.token_urlsafe(32))
    assert f"`\\b{TOKEN_PATTERN}\\b`" in doc
    assert f"`\\b{LEGACY_TOKEN_PATTERN}(?![A-Za-z0-9_-])`" in doc
