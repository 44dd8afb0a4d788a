"""`set?up_count=N[&down_count=M]`: the envelope, bad inputs, the hourly history, and
the order of concurrent ups around a set, on one node and two."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Harness, HarnessFactory
from helpers import assert_error, bearer, flush

from tally.counters import MAX_SET
from tally.models import Permission

BAD_SET = [
    "",
    "down_count=3",
    "up_count=",
    "up_count",
    "up_count=-1",
    "up_count=abc",
    "up_count=1.0",
    "up_count=1&up_count=1",
    f"up_count={MAX_SET + 1}",
    "up_count=5&down_count=",
    "up_count=5&down_count=-2",
    "up_count=5&down_count=x",
    "up_count=5&down_count=1&down_count=1",
    f"up_count=5&down_count={MAX_SET + 1}",
]


@pytest.mark.parametrize("query", BAD_SET)
async def test_bad_set_is_400_and_changes_nothing(harness: Harness, query: str) -> None:
    """A missing, empty, negative, non-numeric, repeated or oversized total is a 400 in
    the documented shape; the counter keeps its totals, and no counter is created."""
    ws = await harness.workspace()
    admin = await harness.token(ws, Permission.ADMIN)
    await harness.counter(ws, "c")
    await harness.get("/v2/ws/c/up?by=3", admin)
    assert_error(await harness.get(f"/v2/ws/c/set?{query}", admin), 400)
    assert_error(await harness.get(f"/v2/ws/new/set?{query}", admin), 400)
    counter = await harness.store.read_counter("ws", "c")
    assert counter is not None
    assert (counter.up_count, counter.down_count) == (3, 0)
    assert await harness.store.read_counter("ws", "new") is None


async def test_set_without_an_admin_token_says_which_it_needs(harness: Harness) -> None:
    """401 without a token, 403 with a Write one, each naming "an admin token"."""
    ws = await harness.workspace()
    write = await harness.token(ws, Permission.WRITE)
    await harness.counter(ws, "c")
    message = "this action needs an admin token of the workspace"
    for r, status in (
        (await harness.get("/v2/ws/c/set?up_count=1"), 401),
        (await harness.get("/v2/ws/c/set?up_count=1", write), 403),
    ):
        assert_error(r, status)
        assert r.json()["message"] == message
    r = await harness.get("/v2/ws/c/reset")
    assert r.json()["message"] == "this action needs a write token of the workspace"


async def test_set_answers_the_counter_and_the_history_sums_to_it(harness: Harness) -> None:
    """set answers the counter envelope with the new totals (down_count 0 if not given);
    the stats' every grouping then sums to the totals, today's included."""
    ws = await harness.workspace()
    admin = await harness.token(ws, Permission.ADMIN)
    await harness.get("/v2/ws/c/up?by=40", admin)
    await harness.get("/v2/ws/c/down?by=4", admin)
    r = await harness.get("/v2/ws/c/set?up_count=1200&down_count=30", admin)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"code", "data"}
    data = r.json()["data"]
    assert (data["up_count"], data["down_count"], data["value"]) == (1200, 30, 1170)
    r = await harness.get("/v2/ws/c/set?up_count=1000", admin)  # lower, down_count 0
    assert (r.json()["data"]["up_count"], r.json()["data"]["down_count"]) == (1000, 0)
    await harness.get("/v2/ws/c/up", admin)
    body = (await harness.get("/v2/ws/c/stats")).json()["data"]
    assert (body["up_count"], body["down_count"]) == (1001, 0)
    stats = body["stats"]
    assert stats["today"] == {"up": 1001, "down": 0}
    for grouping in ("hours", "weekdays", "quarters"):
        pairs = stats["temporal"][grouping].values()
        assert sum(p["up"] for p in pairs) == 1001
        assert sum(p["down"] for p in pairs) == 0
    counter = await harness.store.read_counter("ws", "c")
    assert counter is not None
    assert (counter.up_count, counter.down_count) == (1001, 0)


async def test_set_then_reset_keeps_the_history(harness: Harness) -> None:
    """A reset after a set still keeps the history (only set records a difference)."""
    ws = await harness.workspace()
    admin = await harness.token(ws, Permission.ADMIN)
    await harness.get("/v2/ws/c/set?up_count=50", admin)
    await harness.get("/v2/ws/c/reset", admin)
    body = (await harness.get("/v2/ws/c/stats")).json()["data"]
    assert (body["up_count"], body["down_count"]) == (0, 0)
    assert body["stats"]["today"] == {"up": 50, "down": 0}


BASE = 1_000_000


async def ups_around_a_set(
    nodes: list[Harness], writer: str, admin: str, ups: int
) -> tuple[list[int], int]:
    """`ups` concurrent ups spread over the nodes, with a set to BASE among them; the
    ups' answered up_counts and the set's."""

    async def up(i: int) -> int:
        if i == ups // 2:
            await asyncio.sleep(0)
        r = await nodes[i % len(nodes)].client.get("/v2/ws/c/up", headers=bearer(writer))
        assert r.status_code == 200, r.text
        return int(r.json()["data"]["up_count"])

    async def set_base() -> int:
        await asyncio.sleep(0.005)  # in the middle of the ups
        r = await nodes[0].client.get(f"/v2/ws/c/set?up_count={BASE}", headers=bearer(admin))
        assert r.status_code == 200, r.text
        return int(r.json()["data"]["up_count"])

    *answers, answered_set = await asyncio.gather(*(up(i) for i in range(ups)), set_base())
    return answers, answered_set


@pytest.mark.parametrize(
    ("durability", "node_count"), [("commit", 1), ("commit", 2), ("buffered", 1)]
)
async def test_ups_around_a_set_are_ordered_exactly(
    make_harness: HarnessFactory, durability: str, node_count: int
) -> None:
    """The order: a set replaces the totals as they are when it commits; an up ordered
    before it is in the totals it replaces (and answered below BASE), an up ordered
    after it adds to BASE. So the answers below BASE are exactly 1..m and those above
    are exactly BASE+1..BASE+k, each once, m + k = all ups, and the counter ends at
    BASE + k, its history summing to that. (Each answer is the request's own value: in
    commit mode, and in buffered mode on one node.)"""
    nodes = [await make_harness(durability=durability) for _ in range(node_count)]
    ws = await nodes[0].workspace()
    writer = await nodes[0].token(ws, Permission.WRITE)
    admin = await nodes[0].token(ws, Permission.ADMIN)
    await nodes[0].counter(ws, "c")
    ups = 300
    answers, answered_set = await ups_around_a_set(nodes, writer, admin, ups)
    before = sorted(v for v in answers if v < BASE)
    after = sorted(v for v in answers if v > BASE)
    assert len(before) + len(after) == ups  # none answered BASE itself
    assert before == list(range(1, len(before) + 1))
    assert after == list(range(BASE + 1, BASE + len(after) + 1))
    assert BASE <= answered_set <= BASE + len(after)
    await flush(nodes)
    for node in nodes:
        assert (await node.get("/v2/ws/c")).json()["data"]["up_count"] == BASE + len(after)
    counter = await nodes[0].store.read_counter("ws", "c")
    assert counter is not None
    assert counter.up_count == BASE + len(after)
    history = await nodes[0].store.read_history(counter.id)
    assert sum(b[1] for b in history.buckets) == BASE + len(after)


@pytest.mark.parametrize("node_count", [1, 2])
async def test_ups_around_a_buffered_set_add_up(
    make_harness: HarnessFactory, node_count: int
) -> None:
    """Buffered: an up answered before the other node's batch commits does not know
    where that batch falls, so the answers do not tell the order across nodes; still
    each up is applied once, before or after the set (which answers after its commit):
    the counter ends between BASE and BASE + ups, and its history sums to it."""
    nodes = [await make_harness(durability="buffered") for _ in range(node_count)]
    ws = await nodes[0].workspace()
    writer = await nodes[0].token(ws, Permission.WRITE)
    admin = await nodes[0].token(ws, Permission.ADMIN)
    await nodes[0].counter(ws, "c")
    _, answered_set = await ups_around_a_set(nodes, writer, admin, 200)
    await flush(nodes)
    counter = await nodes[0].store.read_counter("ws", "c")
    assert counter is not None
    assert BASE <= answered_set <= counter.up_count <= BASE + 200
    history = await nodes[0].store.read_history(counter.id)
    assert sum(b[1] for b in history.buckets) == counter.up_count
    for node in nodes:
        assert (await node.get("/v2/ws/c")).json()["data"]["up_count"] == counter.up_count
