"""The permission matrix of the V1 endpoints: V1 has no tokens, so every caller of
tests/test_permissions.py gets what an anonymous one gets: public counters of an open
namespace for everyone, private ones for no one ("record not found"), missing ones
created by up / down / set."""

from __future__ import annotations

import asyncio

import pytest
from conftest import HarnessFactory
from test_permissions import SEED, World, make_world

CALLERS = ("anon", "read", "write", "admin", "other_admin")
ACTIONS = {
    "get": ("", None),
    "up": ("/up", 2),
    "down": ("/down", 0),
    "set": ("/set?count=7", 7),
    "list": ("/list", None),
}
VALUE = SEED[0] - SEED[1]  # the counter's count before the request (1)


def status_of(kind: str, action: str) -> int:
    if kind == "private" or (kind == "missing" and action in ("get", "list")):
        return 400
    return 200


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("kind", ["public", "private", "missing"])
@pytest.mark.parametrize("caller", CALLERS)
async def test_v1_matrix(make_harness: HarnessFactory, caller: str, kind: str, action: str) -> None:
    """Any token, or none, gets the same: tokens do not exist for V1."""
    harness = await make_harness(token_cache_ttl=0.001)
    world: World = await make_world(harness, kind)
    await harness.store.set_workspace_rules(world.ws.id, v1_open=True, origins=())
    await asyncio.sleep(0.01)  # the node's cached counter (closed for V1) expires
    before = await world.counts()
    path, count = ACTIONS[action]
    r = await harness.client.get(f"/v1/ws/c{path}", headers=world.header(caller))
    status = status_of(kind, action)
    assert r.status_code == status, r.text
    body = r.json()
    if status == 400:
        assert body == {"code": 400, "message": "record not found"}
        assert await world.counts() == before
        return
    if action == "list":
        assert isinstance(body, list)
        return
    if kind == "missing":  # created, then counted from 0 (a down stays at 0)
        expected = {"up": 1, "down": 0, "set": 7}[action]
    else:
        expected = VALUE if count is None else count
    assert body["count"] == expected
