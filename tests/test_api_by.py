"""`up?by=N` and `down?by=N`: bad inputs, exact per-request values under concurrency, on
one node and two, in both durability modes."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest
from conftest import Harness, HarnessFactory
from helpers import assert_error, bearer, flush

from tally.models import Permission

BAD_BY = [
    "by=",
    "by",
    "by=0",
    "by=-1",
    "by=+5",
    "by=abc",
    "by=1.5",
    "by=1e3",
    "by= 5",
    "by=0x10",
    "by=1000001",
    "by=99999999999999999999999",
    "by=1&by=2",
    "by=2&by=2",
    "by=%FF",
    "by=%D9%A3",  # an Arabic-Indic three: a digit to str.isdigit, not to us
]


@pytest.mark.parametrize("query", BAD_BY)
@pytest.mark.parametrize("action", ["up", "down"])
async def test_bad_by_is_400_and_counts_nothing(harness: Harness, action: str, query: str) -> None:
    """A missing, zero, negative, non-numeric, repeated or oversized by is a 400 in the
    documented shape, for any caller, and changes nothing."""
    ws = await harness.workspace()
    admin = await harness.token(ws, Permission.ADMIN)
    await harness.counter(ws, "c")
    for token in (admin, None):
        assert_error(await harness.get(f"/v2/ws/c/{action}?{query}", token), 400)
        assert_error(await harness.get(f"/v2/ws/new/{action}?{query}", token), 400)
    counter = await harness.store.read_counter("ws", "c")
    assert counter is not None
    assert (counter.up_count, counter.down_count) == (0, 0)
    assert await harness.store.read_counter("ws", "new") is None


async def test_by_adds_n_and_the_stats_follow(harness: Harness) -> None:
    """up?by=N adds N to up_count, down?by=N to down_count, and the hourly stats count N
    events; other query parameters are ignored; the maximum is 1,000,000."""
    ws = await harness.workspace()
    writer = await harness.token(ws, Permission.WRITE)
    r = await harness.get("/v2/ws/c/up?by=1000000", writer)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["up_count"] == 1_000_000
    r = await harness.get("/v2/ws/c/down?by=250&x=1", writer)
    assert (r.json()["data"]["up_count"], r.json()["data"]["down_count"]) == (1_000_000, 250)
    assert r.json()["data"]["value"] == 999_750
    r = await harness.get("/v2/ws/c/up?by=007", writer)  # leading zeros are still 7
    assert r.json()["data"]["up_count"] == 1_000_007
    stats = (await harness.get("/v2/ws/c/stats")).json()["data"]["stats"]
    assert stats["today"] == {"up": 1_000_007, "down": 250}


def check_serial(results: list[tuple[int, int]]) -> None:
    """(by, value) pairs answered to concurrent requests on one counter from 0: sorted by
    value, each value is the one before plus its own by (no request saw another's
    change as its own, none was lost, none counted twice)."""
    previous = 0
    for by, value in sorted(results, key=lambda r: r[1]):
        assert value == previous + by, (by, value, previous)
        previous = value


async def concurrent_ups(nodes: list[Harness], token: str, bys: list[int]) -> list[tuple[int, int]]:
    async def one(i: int, by: int) -> tuple[int, int]:
        r = await nodes[i % len(nodes)].client.get(f"/v2/ws/c/up?by={by}", headers=bearer(token))
        assert r.status_code == 200, r.text
        return by, int(r.json()["data"]["up_count"])

    return list(await asyncio.gather(*(one(i, by) for i, by in enumerate(bys))))


@pytest.mark.parametrize("durability", ["commit", "buffered"])
@pytest.mark.parametrize("node_count", [1, 2])
async def test_concurrent_by_counts_are_exact(
    make_harness: HarnessFactory, durability: str, node_count: int
) -> None:
    """200 concurrent up?by=N with random N (on one node, or spread over two on one
    database): the total is their sum, and each answer is exactly its own value in one
    serial order (buffered on two nodes: an answer cannot include the other node's
    pending ups); every node then reads the total."""
    nodes = [await make_harness(durability=durability) for _ in range(node_count)]
    ws = await nodes[0].workspace()
    writer = await nodes[0].token(ws, Permission.WRITE)
    await nodes[0].counter(ws, "c")
    rng = random.Random(12)
    bys = [rng.choice((1, 2, 7, 100, 1000)) for _ in range(200)]
    results = await concurrent_ups(nodes, writer, bys)
    if durability == "commit" or node_count == 1:
        check_serial(results)
    await flush(nodes)  # buffered: the other node's writes are committed within 1 s
    for node in nodes:
        r = await node.get("/v2/ws/c")
        assert r.json()["data"]["up_count"] == sum(bys)
    counter = await nodes[0].store.read_counter("ws", "c")
    assert counter is not None
    assert counter.up_count == sum(bys)
    history = await nodes[0].store.read_history(counter.id)
    assert sum(b[1] for b in history.buckets) == sum(bys)


async def test_by_respects_the_rate_limit_as_one_request(make_harness: HarnessFactory) -> None:
    """A by of any size is one request against the rate limit of its path."""
    from tally.config import RateLimit

    h = await make_harness(rate_limit=RateLimit(3, 60.0))
    ws = await h.workspace()
    writer = await h.token(ws, Permission.WRITE)
    statuses = []
    for _ in range(4):
        r: httpx.Response = await h.get("/v2/ws/c/up?by=50", writer)
        statuses.append(r.status_code)
    assert statuses == [200, 200, 200, 429]
    counter = await h.store.read_counter("ws", "c")
    assert counter is not None
    assert counter.up_count == 150
