"""Counter bounds: an up or down that would cross the floor or the ceiling is a 409 and
counts nothing, exactly, under concurrency, in both durability modes, on two nodes."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Harness, HarnessFactory
from helpers import assert_error, bearer, flush

from tally.models import CounterChange, Permission


async def bounded(h: Harness, floor: int | None, ceiling: int | None) -> str:
    """Workspace "ws", its public counter "c" with these bounds; a Write token."""
    ws = await h.workspace()
    c = await h.counter(ws, "c")
    await h.store.change_counter(c.id, CounterChange(bounds=(floor, ceiling), origins=()))
    return await h.token(ws, Permission.WRITE)


async def totals(h: Harness) -> tuple[int, int]:
    counter = await h.store.read_counter("ws", "c")
    assert counter is not None
    return counter.up_count, counter.down_count


async def test_inventory_stops_at_zero_and_at_the_ceiling(harness: Harness) -> None:
    """Stock between 0 and 10: ups and downs within the bounds count, one that would
    cross a bound is a 409 naming it, counts nothing (nor in the stats), and the next
    one that fits counts again."""
    writer = await bounded(harness, 0, 10)
    r = await harness.get("/v2/ws/c/up?by=8", writer)
    assert r.json()["data"]["value"] == 8
    r = await harness.get("/v2/ws/c/up?by=3", writer)
    assert_error(r, 409)
    assert "ceiling of 10" in r.json()["message"]
    assert (await harness.get("/v2/ws/c/up?by=2", writer)).json()["data"]["value"] == 10
    assert_error(await harness.get("/v2/ws/c/up"), 409)  # anonymous too
    r = await harness.get("/v2/ws/c/down?by=11", writer)
    assert_error(r, 409)
    assert "floor of 0" in r.json()["message"]
    assert (await harness.get("/v2/ws/c/down?by=10", writer)).json()["data"]["value"] == 0
    assert_error(await harness.get("/v2/ws/c/down"), 409)
    assert await totals(harness) == (10, 10)
    stats = (await harness.get("/v2/ws/c/stats")).json()["data"]["stats"]
    assert stats["today"] == {"up": 10, "down": 10}


async def test_set_outside_the_bounds_is_409(harness: Harness) -> None:
    """A set whose value is outside the bounds is refused and changes nothing; reset is
    not held to them."""
    await bounded(harness, 0, 100)
    ws = await harness.store.get_workspace("ws")
    assert ws is not None
    admin = await harness.token(ws, Permission.ADMIN)
    await harness.get("/v2/ws/c/up?by=5", admin)
    assert_error(await harness.get("/v2/ws/c/set?up_count=101", admin), 409)
    assert_error(await harness.get("/v2/ws/c/set?up_count=0&down_count=1", admin), 409)
    assert await totals(harness) == (5, 0)
    r = await harness.get("/v2/ws/c/set?up_count=150&down_count=60", admin)
    assert r.json()["data"]["value"] == 90
    assert (await harness.get("/v2/ws/c/reset", admin)).status_code == 200


@pytest.mark.parametrize("durability", ["commit", "buffered"])
async def test_a_bounds_change_takes_effect_within_the_cache_ttl(
    make_harness: HarnessFactory, durability: str
) -> None:
    """Bounds set on a counter a node has cached hold there once the cache TTL passed."""
    h = await make_harness(durability=durability, token_cache_ttl=0.05)
    writer = await bounded(h, None, None)
    await h.get("/v2/ws/c/up?by=5", writer)
    counter = await h.store.read_counter("ws", "c")
    assert counter is not None
    await h.store.change_counter(counter.id, CounterChange(bounds=(None, 5), origins=()))
    await asyncio.sleep(0.1)
    assert_error(await h.get("/v2/ws/c/up", writer), 409)
    await flush([h])
    assert await totals(h) == (5, 0)


@pytest.mark.parametrize("durability", ["commit", "buffered"])
@pytest.mark.parametrize("node_count", [1, 2])
async def test_concurrent_ups_never_cross_the_ceiling(
    make_harness: HarnessFactory, durability: str, node_count: int
) -> None:
    """300 concurrent ups of random size over one or two nodes against a ceiling of
    1,000: the accepted ones (200) sum to the final value, which never passes 1,000,
    every other one is a 409; each 200 answers a value within the bounds, distinct
    from every other's, and so does every read after."""
    nodes = [await make_harness(durability=durability) for _ in range(node_count)]
    writer = await bounded(nodes[0], None, 1000)
    sizes = [(i * 7) % 13 + 1 for i in range(300)]

    async def up(i: int, by: int) -> tuple[int, int, int]:
        r = await nodes[i % node_count].client.get(f"/v2/ws/c/up?by={by}", headers=bearer(writer))
        if r.status_code != 200:
            assert_error(r, 409)
            return by, 409, 0
        return by, 200, int(r.json()["data"]["up_count"])

    results = await asyncio.gather(*(up(i, by) for i, by in enumerate(sizes)))
    accepted = [(by, v) for by, status, v in results if status == 200]
    assert sum(by for by, _ in accepted) == (await totals(nodes[0]))[0]
    assert (await totals(nodes[0]))[0] <= 1000
    assert any(status == 409 for _, status, _ in results)
    # every accepted up is answered its own value after the commit (checked changes take
    # the commit path in buffered mode too): in value order, each adds its own size
    previous = 0
    for by, value in sorted(accepted, key=lambda a: a[1]):
        assert value == previous + by
        previous = value
    final = (await totals(nodes[0]))[0]
    assert final > 1000 - 13  # only refused when the next one really did not fit
    for node in nodes:
        assert (await node.get("/v2/ws/c")).json()["data"]["up_count"] == final


@pytest.mark.parametrize("node_count", [1, 2])
async def test_concurrent_ups_and_downs_stay_between_the_bounds(
    make_harness: HarnessFactory, node_count: int
) -> None:
    """Inventory, concurrently: 200 ups and 200 downs of one item over one or two nodes
    between 0 and 20 never leave the bounds, and the counter ends at accepted ups minus
    accepted downs; the stats count exactly the accepted ones."""
    nodes = [await make_harness() for _ in range(node_count)]
    writer = await bounded(nodes[0], 0, 20)

    async def move(i: int) -> tuple[str, int, int]:
        action = "up" if i % 2 else "down"
        r = await nodes[i % node_count].client.get(f"/v2/ws/c/{action}", headers=bearer(writer))
        if r.status_code == 409:
            return action, 409, 0
        assert r.status_code == 200, r.text
        value = int(r.json()["data"]["value"])
        assert 0 <= value <= 20
        return action, 200, value

    results = await asyncio.gather(*(move(i) for i in range(400)))
    ups = sum(1 for a, s, _ in results if a == "up" and s == 200)
    downs = sum(1 for a, s, _ in results if a == "down" and s == 200)
    assert await totals(nodes[0]) == (ups, downs)
    assert 0 <= ups - downs <= 20
    stats = (await nodes[-1].get("/v2/ws/c/stats")).json()["data"]["stats"]
    assert stats["today"] == {"up": ups, "down": downs}


async def test_a_bounded_buffered_up_answers_after_its_commit(make_harness: HarnessFactory) -> None:
    """Buffered mode, a bounded counter: the up does not wait for the flush interval (an
    hour here), and its answer is committed when it comes."""
    h = await make_harness(durability="buffered", flush_interval=3600.0)
    writer = await bounded(h, None, 5)
    r = await asyncio.wait_for(h.get("/v2/ws/c/up", writer), 60)
    assert r.status_code == 200
    assert await totals(h) == (1, 0)
