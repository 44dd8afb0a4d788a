"""The permission matrix of the endpoints issue 12 adds to V2: `up?by=N`, `down?by=N`
(N > 1 needs Write of the workspace) and `set` (Admin), on public, private and missing
counters, for every caller of tests/test_permissions.py."""

from __future__ import annotations

import pytest
from conftest import Harness
from helpers import assert_error
from test_permissions import CALLERS, SEED, World, make_world

ACTIONS = ("up_by", "down_by", "set")
PATHS = {"up_by": "/up?by=5", "down_by": "/down?by=5", "set": "/set?up_count=10&down_count=4"}
# (up, down) after a successful action on a counter at SEED (3, 2), and on a missing one
EFFECT = {"up_by": (8, 2), "down_by": (3, 7), "set": (10, 4)}
CREATED = {"up_by": (5, 0), "down_by": (0, 5), "set": (10, 4)}
Row = tuple[int, int, int]

#                   up_by down_by set
PUBLIC: dict[str, Row] = {
    "anon":        (401, 401, 401),
    "read":        (403, 403, 403),
    "write":       (200, 200, 403),
    "admin":       (200, 200, 200),
    "other_read":  (403, 403, 403),
    "other_write": (403, 403, 403),
    "other_admin": (403, 403, 403),
}  # fmt: skip
PRIVATE: dict[str, Row] = {
    "anon":        (404, 404, 404),
    "read":        (403, 403, 403),
    "write":       (200, 200, 403),
    "admin":       (200, 200, 200),
    "other_read":  (404, 404, 404),
    "other_write": (404, 404, 404),
    "other_admin": (404, 404, 404),
}  # fmt: skip
# A missing counter is created by up/down with Write of "ws", by set with Admin of "ws".
MISSING: dict[str, Row] = {
    "anon":        (404, 404, 404),
    "read":        (404, 404, 404),
    "write":       (200, 200, 404),
    "admin":       (200, 200, 200),
    "other_read":  (404, 404, 404),
    "other_write": (404, 404, 404),
    "other_admin": (404, 404, 404),
}  # fmt: skip
assert set(PUBLIC) == set(PRIVATE) == set(MISSING) == set(CALLERS)


def matrix(table: dict[str, Row]) -> list[object]:
    return [
        pytest.param(caller, action, status, id=f"{caller}-{action}")
        for caller, row in table.items()
        for action, status in zip(ACTIONS, row, strict=True)
    ]


async def call(world: World, caller: str, action: str) -> tuple[int, dict[str, object]]:
    r = await world.h.client.get(f"/v2/ws/c{PATHS[action]}", headers=world.header(caller))
    if r.status_code != 200:
        assert_error(r, r.status_code)
    return r.status_code, r.json()


@pytest.mark.parametrize(("caller", "action", "status"), matrix(PUBLIC))
async def test_public_counter(harness: Harness, caller: str, action: str, status: int) -> None:
    """by > 1 needs Write of "ws", set needs Admin of "ws"; 401 without a token."""
    world = await make_world(harness, "public")
    got, body = await call(world, caller, action)
    assert got == status, body
    assert await world.counts() == (EFFECT[action] if status == 200 else SEED)


@pytest.mark.parametrize(("caller", "action", "status"), matrix(PRIVATE))
async def test_private_counter(harness: Harness, caller: str, action: str, status: int) -> None:
    """A private counter is a 404 without a token of "ws", else 403 without the permission."""
    world = await make_world(harness, "private")
    got, body = await call(world, caller, action)
    assert got == status, body
    assert await world.counts() == (EFFECT[action] if status == 200 else SEED)


@pytest.mark.parametrize(("caller", "action", "status"), matrix(MISSING))
async def test_missing_counter(harness: Harness, caller: str, action: str, status: int) -> None:
    """Only the permission that may change a counter creates a missing one (public)."""
    world = await make_world(harness, "missing")
    got, body = await call(world, caller, action)
    assert got == status, body
    if status != 200:
        assert await world.names() == []
        return
    data = body["data"]
    assert isinstance(data, dict)
    assert (data["up_count"], data["down_count"]) == CREATED[action]
    assert await world.counts() == CREATED[action]
    counter = await world.h.store.read_counter("ws", "c")
    assert counter is not None
    assert not counter.private


@pytest.mark.parametrize("action", ["up", "down"])
@pytest.mark.parametrize("caller", CALLERS)
async def test_by_1_is_a_plain_count(harness: Harness, caller: str, action: str) -> None:
    """?by=1 is allowed to whoever may count one at a time (anyone on a public counter)."""
    world = await make_world(harness, "public")
    r = await world.h.client.get(f"/v2/ws/c/{action}?by=1", headers=world.header(caller))
    assert r.status_code == 200, r.text
    assert await world.counts() == ((4, 2) if action == "up" else (3, 3))
