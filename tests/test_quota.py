"""A workspace's counter quota (TALLY_COUNTER_QUOTA, its own in the settings) and the
budget of new counters per token or client IP (TALLY_CREATE_RATE_LIMIT): no one creates
300,000 counters unnoticed, on either backend, across nodes."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Harness, HarnessFactory
from helpers import assert_error, bearer

from tally.config import RateLimit
from tally.errors import QuotaReached
from tally.models import Permission
from tally.storage import store_from_url
from tally.storage.base import Store


async def test_the_quota_refuses_new_counters_only(store: Store) -> None:
    """At the quota a new counter is refused (create, ensure), an existing one is found;
    a deletion makes room; the workspace's own quota overrides the server's."""
    store.counter_quota = 3
    ws = await store.create_workspace("ws", "ws")
    for name in "abc":
        await store.create_counter(ws.id, name)
    with pytest.raises(QuotaReached):
        await store.create_counter(ws.id, "d")
    with pytest.raises(QuotaReached):
        await store.ensure_counter(ws.id, "d")
    assert (await store.ensure_counter(ws.id, "a")).name == "a"
    assert await store.counter_usage(ws.id) == (3, None)
    assert await store.read_counter("ws", "d") is None
    c = await store.read_counter("ws", "c")
    assert c is not None
    await store.delete_counter(c.id)
    await store.ensure_counter(ws.id, "d")
    await store.set_counter_quota(ws.id, 5)
    await store.create_counter(ws.id, "e")
    assert await store.counter_usage(ws.id) == (4, 5)
    await store.set_counter_quota(ws.id, 0)  # its own: none
    await store.create_counter(ws.id, "f")
    store.counter_quota = 0
    await store.set_counter_quota(ws.id, None)
    await store.create_counter(ws.id, "g")
    assert await store.counter_usage(ws.id) == (6, None)


async def test_the_quota_holds_for_two_nodes_creating_at_once(store_url: str) -> None:
    """Two stores (two nodes) creating 40 counters at once under a quota of 25: 25."""
    nodes = [store_from_url(store_url, node=f"n{i}") for i in range(2)]
    for s in nodes:
        await s.open()
        s.counter_quota = 25
    try:
        ws = await nodes[0].create_workspace("ws", "ws")

        async def create(s: Store, name: str) -> bool:
            try:
                await s.ensure_counter(ws.id, name)
            except QuotaReached:
                return False
            return True

        made = await asyncio.gather(
            *(create(nodes[i % 2], f"c{i}") for i in range(40)), return_exceptions=False
        )
        assert sum(made) == 25
        assert await nodes[1].counter_usage(ws.id) == (25, None)
        assert await nodes[0].count_counters(ws.id) == 25
    finally:
        for s in nodes:
            await s.close()


async def test_api_quota_is_a_403_and_settings_show_it(harness: Harness) -> None:
    """An up of a new name at the quota: 403 in the V2 shape, nothing created; the
    existing ones count on; the settings show the count and set the workspace's own."""
    h = harness
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    write = await h.token(ws, Permission.WRITE)
    r = await h.client.patch("/v2/ws/-/settings", json={"counter_quota": 2}, headers=bearer(admin))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["counter_quota"] == 2
    assert r.json()["data"]["counter_quota_own"] is True
    for name in ("a", "b"):
        assert (await h.get(f"/v2/ws/{name}/up", write)).status_code == 200
    r = await h.get("/v2/ws/c/up", write)
    assert_error(r, 403)
    assert "quota of 2 counters" in r.json()["message"]
    r = await h.client.post("/v2/ws/-/counters", json={"name": "c"}, headers=bearer(admin))
    assert_error(r, 403)
    assert (await h.get("/v2/ws/a/up", write)).json()["data"]["up_count"] == 2
    assert await h.store.read_counter("ws", "c") is None
    settings = (await h.get("/v2/ws/-/settings", admin)).json()["data"]
    assert (settings["counters"], settings["counter_quota"]) == (2, 2)
    # an Admin token cannot raise its quota past the server's
    for bad in (0, -1, 100_001, "9", 1.5, True):
        r = await h.client.patch(
            "/v2/ws/-/settings", json={"counter_quota": bad}, headers=bearer(admin)
        )
        assert_error(r, 400)
    # a whole number written with a fraction of zero is one, as JSON Schema counts them
    r = await h.client.patch(
        "/v2/ws/-/settings", json={"counter_quota": 284.0}, headers=bearer(admin)
    )
    assert r.json()["data"]["counter_quota"] == 284
    r = await h.client.patch(
        "/v2/ws/-/settings", json={"counter_quota": None}, headers=bearer(admin)
    )
    assert r.json()["data"]["counter_quota"] == 100_000
    assert r.json()["data"]["counter_quota_own"] is False
    assert (await h.get("/v2/ws/c/up", write)).status_code == 200


async def test_new_counters_have_their_own_budget(make_harness: HarnessFactory) -> None:
    """A token creates 3 counters, the 4th is a 429 with Retry-After and is not created;
    counting existing counters goes on; another token has its own budget."""
    h = await make_harness(create_rate_limit=RateLimit(3, 3600.0))
    ws = await h.workspace()
    write = await h.token(ws, Permission.WRITE)
    other = await h.token(ws, Permission.WRITE)
    for i in range(3):
        assert (await h.get(f"/v2/ws/n{i}/up", write)).status_code == 200
    r = await h.get("/v2/ws/n3/up", write)
    assert_error(r, 429)
    assert int(r.headers["retry-after"]) >= 1
    assert "new counters" in r.json()["message"]
    assert await h.store.read_counter("ws", "n3") is None
    for _ in range(5):
        assert (await h.get("/v2/ws/n0/up", write)).status_code == 200
    assert (await h.get("/v2/ws/n3/up", other)).status_code == 200


async def test_v1_new_counters_are_budgeted_per_client_ip(make_harness: HarnessFactory) -> None:
    """Anonymous V1 ups of new names in an open namespace: 2 per client IP here."""
    h = await make_harness(create_rate_limit=RateLimit(2, 3600.0))
    ws = await h.workspace("site.example")
    await h.store.set_workspace_rules(ws.id, v1_open=True, origins=())
    for i in range(2):
        assert (await h.get(f"/v1/site.example/v{i}/up")).status_code == 200
    r = await h.get("/v1/site.example/v2/up")
    assert r.status_code == 429
    assert r.json()["code"] == "429"
    assert await h.store.read_counter("site.example", "v2") is None
    assert (await h.get("/v1/site.example/v0/up")).json()["count"] == 2
