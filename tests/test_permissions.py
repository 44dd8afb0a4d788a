"""Tokens and permissions on the V2 API: who may do what to public, private and missing counters.

Every test works on the workspace "ws" (counter "c") and a second workspace "other". Callers:
anonymous, a Read / Write / Admin token of "ws", and a Read / Write / Admin token of "other".
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
import pytest
from conftest import Harness, HarnessFactory
from helpers import assert_error

from tally.auth import issue_token
from tally.models import Permission, Workspace
from tally.web.app import load_secret_key

ACTIONS = ("get", "stats", "up", "down", "reset")
PATHS = {"get": "", "stats": "/stats", "up": "/up", "down": "/down", "reset": "/reset"}
SEED = (3, 2)  # (up, down) of the counter before the request under test
# (up, down) after a successful action on a counter at SEED
EFFECT = {"get": SEED, "stats": SEED, "up": (4, 2), "down": (3, 3), "reset": (0, 0)}
OWN = ("read", "write", "admin")
OTHER = ("other_read", "other_write", "other_admin")
TOKENS = OWN + OTHER
CALLERS = ("anon", *TOKENS)
Row = tuple[int, int, int, int, int]

# The expected status of each caller for each action, in the order of ACTIONS:
#                   get stats up   down reset
PUBLIC: dict[str, Row] = {
    "anon":        (200, 200, 200, 200, 401),
    "read":        (200, 200, 200, 200, 403),
    "write":       (200, 200, 200, 200, 200),
    "admin":       (200, 200, 200, 200, 200),
    "other_read":  (200, 200, 200, 200, 403),
    "other_write": (200, 200, 200, 200, 403),
    "other_admin": (200, 200, 200, 200, 403),
}  # fmt: skip
PRIVATE: dict[str, Row] = {
    "anon":        (404, 404, 404, 404, 404),
    "read":        (200, 200, 403, 403, 403),
    "write":       (200, 200, 200, 200, 200),
    "admin":       (200, 200, 200, 200, 200),
    "other_read":  (404, 404, 404, 404, 404),
    "other_write": (404, 404, 404, 404, 404),
    "other_admin": (404, 404, 404, 404, 404),
}  # fmt: skip
# On a counter that does not exist, only up / down with Write or Admin of "ws" (creating it).
MISSING: dict[str, Row] = {
    "anon":        (404, 404, 404, 404, 404),
    "read":        (404, 404, 404, 404, 404),
    "write":       (404, 404, 200, 200, 404),
    "admin":       (404, 404, 200, 200, 404),
    "other_read":  (404, 404, 404, 404, 404),
    "other_write": (404, 404, 404, 404, 404),
    "other_admin": (404, 404, 404, 404, 404),
}  # fmt: skip
assert set(PUBLIC) == set(PRIVATE) == set(MISSING) == set(CALLERS)


def matrix(table: dict[str, Row]) -> list[object]:
    """One pytest.param(caller, action, status) per cell of a permission table."""
    return [
        pytest.param(caller, action, status, id=f"{caller}-{action}")
        for caller, row in table.items()
        for action, status in zip(ACTIONS, row, strict=True)
    ]


def auth(header: str | None) -> dict[str, str]:
    """An Authorization header with exactly `header` as its value (none if None)."""
    return {"Authorization": header} if header is not None else {}


@dataclass
class World:
    """The app, the workspaces "ws" and "other", and a token secret per caller."""

    h: Harness
    ws: Workspace
    other: Workspace
    secrets: dict[str, str]
    token_ids: dict[str, int]

    def header(self, caller: str) -> dict[str, str]:
        """The Authorization header of `caller` ("anon": none)."""
        return auth(f"Bearer {self.secrets[caller]}") if caller != "anon" else {}

    async def call(self, caller: str, action: str, name: str = "c") -> httpx.Response:
        """`caller` does `action` on the counter ws/`name`."""
        return await self.h.client.get(f"/v2/ws/{name}{PATHS[action]}", headers=self.header(caller))

    async def counts(self, name: str = "c") -> tuple[int, int] | None:
        """The committed (up, down) of ws/`name`, None if it does not exist."""
        counter = await self.h.store.read_counter("ws", name)
        return None if counter is None else (counter.up_count, counter.down_count)

    async def names(self) -> list[str]:
        """The counters of both workspaces, as "workspace/name"."""
        return [
            f"{w.slug}/{c.name}"
            for w in (self.ws, self.other)
            for c in await self.h.store.list_counters(w.id)
        ]


async def make_world(h: Harness, kind: str) -> World:
    """Workspaces, one token per caller, and for kind "public"/"private" the counter ws/c at
    SEED ("missing": no counter)."""
    ws, other = await h.workspace("ws"), await h.workspace("other")
    key = await load_secret_key(h.store, h.app.settings)
    secrets: dict[str, str] = {}
    token_ids: dict[str, int] = {}
    for caller in TOKENS:
        workspace = other if caller.startswith("other_") else ws
        permission = Permission.parse(caller.removeprefix("other_"))
        issued = await issue_token(h.store, key, workspace.id, permission)
        secrets[caller], token_ids[caller] = issued.secret, issued.token.id
    world = World(h, ws, other, secrets, token_ids)
    if kind != "missing":
        await h.counter(ws, "c", private=kind == "private")
        for action, times in (("up", SEED[0]), ("down", SEED[1])):
            for _ in range(times):
                assert (await world.call("admin", action)).status_code == 200
        assert await world.counts() == SEED
    return world


@pytest.fixture
async def public(harness: Harness) -> World:
    """A world whose counter ws/c is public."""
    return await make_world(harness, "public")


@pytest.fixture
async def private(harness: Harness) -> World:
    """A world whose counter ws/c is private."""
    return await make_world(harness, "private")


@pytest.fixture
async def missing(harness: Harness) -> World:
    """A world without any counter."""
    return await make_world(harness, "missing")


async def check_cell(world: World, caller: str, action: str, status: int) -> None:
    """`caller` doing `action` on ws/c gets `status`; the counts change iff it is a 200."""
    r = await world.call(caller, action)
    if status != 200:
        assert_error(r, status)
        assert await world.counts() == SEED
        return
    assert r.status_code == 200, r.text
    assert r.json()["code"] == "200"
    data = r.json()["data"]
    assert (data["up_count"], data["down_count"]) == EFFECT[action]
    assert await world.counts() == EFFECT[action]


# 2. the matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize(("caller", "action", "status"), matrix(PUBLIC))
async def test_public_counter(public: World, caller: str, action: str, status: int) -> None:
    """On a public counter anyone may get, stats, up and down; reset needs Write of "ws"."""
    await check_cell(public, caller, action, status)


@pytest.mark.parametrize(("caller", "action", "status"), matrix(PRIVATE))
async def test_private_counter(private: World, caller: str, action: str, status: int) -> None:
    """A private counter needs a token of "ws" with the permission: 404 without one, else 403."""
    await check_cell(private, caller, action, status)


@pytest.mark.parametrize(("caller", "action", "status"), matrix(MISSING))
async def test_missing_counter(missing: World, caller: str, action: str, status: int) -> None:
    """Only up / down with a Write or Admin token of "ws" create a missing counter, public."""
    r = await missing.call(caller, action)
    if status != 200:
        assert_error(r, status)
        assert await missing.names() == []
        return
    assert r.status_code == 200, r.text
    expected = (1, 0) if action == "up" else (0, 1)
    data = r.json()["data"]
    assert (data["up_count"], data["down_count"]) == expected
    assert await missing.counts() == expected
    assert await missing.names() == ["ws/c"]
    counter = await missing.h.store.read_counter("ws", "c")
    assert counter is not None
    assert not counter.private
    assert (await missing.call("anon", "get")).status_code == 200


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("caller", TOKENS)
async def test_token_never_gives_less_than_anonymous_on_public(
    public: World, caller: str, action: str
) -> None:
    """On a public counter, whatever an anonymous caller may do, any valid token may do too."""
    anonymous = await public.call("anon", action)
    with_token = await public.call(caller, action)
    if anonymous.status_code == 200:
        assert with_token.status_code == 200, with_token.text


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("caller", ["anon", *OTHER])
async def test_private_404_is_identical_to_missing(
    private: World, caller: str, action: str
) -> None:
    """Without a token of "ws", a private counter's 404 body is byte-identical to a missing's."""
    hidden = await private.call(caller, action)
    absent = await private.call(caller, action, name="nothing-here")
    assert_error(hidden, 404)
    assert_error(absent, 404)
    assert hidden.content == absent.content
    assert hidden.headers["content-type"] == absent.headers["content-type"]


# 2. bad tokens ---------------------------------------------------------------------------

# Authorization values that are no valid token; "{real}" is replaced by a real Write token.
BAD_HEADERS = [
    pytest.param("Bearer abc", id="short"),
    pytest.param("Basic xyz", id="basic"),
    pytest.param("Basic {real}", id="basic-with-real-token"),
    pytest.param("Bearer " + "#%!" * 20, id="garbage"),
    pytest.param("Bearer tly_" + "A" * 43, id="unknown-well-formed"),
    pytest.param("Bearer {real}x", id="real-plus-a-char"),
    pytest.param("Bearer {real} extra", id="real-plus-a-word"),
    pytest.param("Bearer", id="scheme-only"),
    pytest.param("{real}", id="no-scheme"),
]


@pytest.mark.parametrize("kind", ["public", "private", "missing"])
@pytest.mark.parametrize("header", BAD_HEADERS)
async def test_bad_token_is_401_everywhere(harness: Harness, header: str, kind: str) -> None:
    """An unknown or malformed token is 401 for every action on any counter, changing nothing."""
    world = await make_world(harness, kind)
    before = await world.counts()
    value = header.format(real=world.secrets["write"])
    for action in ACTIONS:
        r = await world.h.client.get(f"/v2/ws/c{PATHS[action]}", headers=auth(value))
        assert r.status_code == 401, (action, r.text)
        assert_error(r, 401)
    assert await world.counts() == before


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer "])
async def test_bearer_scheme_is_case_insensitive(private: World, scheme: str) -> None:
    """The Bearer scheme is matched in any case (and with extra spaces)."""
    value = f"{scheme} {private.secrets['write']}"
    r = await private.h.client.get("/v2/ws/c/up", headers=auth(value))
    assert r.status_code == 200, r.text
    assert await private.counts() == (4, 2)


@pytest.mark.parametrize("kind", ["public", "private", "missing"])
async def test_revoked_token_is_401(make_harness: HarnessFactory, kind: str) -> None:
    """Once revoked (and its cache entry expired), a token is 401 for every action."""
    world = await make_world(await make_harness(token_cache_ttl=0.001), kind)
    assert (await world.call("read", "get")).status_code == (404 if kind == "missing" else 200)
    before = await world.counts()
    assert await world.h.store.revoke_token(world.token_ids["read"])
    assert await world.h.store.revoke_token(world.token_ids["admin"])
    await asyncio.sleep(0.01)
    for caller in ("read", "admin"):
        for action in ACTIONS:
            r = await world.call(caller, action)
            assert r.status_code == 401, (caller, action, r.text)
            assert_error(r, 401)
    assert await world.counts() == before
    assert (await world.call("write", "up")).status_code == 200  # other tokens still work


async def test_revocation_bites_after_the_cache_ttl(make_harness: HarnessFactory) -> None:
    """A revoked token keeps working at most token_cache_ttl seconds, then is 401."""
    world = await make_world(await make_harness(token_cache_ttl=0.2), "private")
    assert (await world.call("read", "get")).status_code == 200
    await world.h.store.revoke_token(world.token_ids["read"])
    await asyncio.sleep(0.3)
    assert_error(await world.call("read", "get"), 401)
