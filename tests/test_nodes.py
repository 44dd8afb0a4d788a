"""The live nodes, counted from their heartbeats in the database (tally.nodes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from services import TcpProxy

from tally.nodes import LiveNodes
from tally.storage import Store, store_from_url


async def settles(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait (bounded) until `predicate()` holds."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)


async def claimed(url: str, node: str) -> Store:
    """An open store whose node has claimed its name (and so counts as alive)."""
    store = store_from_url(url, node=node)
    await store.open()
    await store.claim_node()
    return store


async def test_the_count_follows_the_nodes_beats(store_url: str) -> None:
    """A node beating in the background counts another node while that one beats, and
    stops counting it once its beats are older than the window."""
    one = await claimed(store_url, "one")
    live = LiveNodes(one, interval=0.05, live_within=0.5)
    assert await live.refresh() == 1
    live.start()
    two = await claimed(store_url, "two")
    try:
        await settles(lambda: live.count == 2)
        await settles(lambda: live.count == 1)  # two never beats again
    finally:
        await live.close()
        await one.close()
        await two.close()


@pytest.mark.postgres
async def test_the_last_count_stands_while_the_database_fails(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """When a beat fails (the database cut off), the node logs it and keeps its last
    count."""
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = postgres_url.replace(target.netloc, f"{target.username}@127.0.0.1:{proxy.port}")
    one, two = await claimed(url, "one"), await claimed(postgres_url, "two")
    live = LiveNodes(one, interval=0.05, live_within=60.0)
    try:
        assert await live.refresh() == 2
        live.start()
        await proxy.cut()
        await settles(lambda: "heartbeat failed" in caplog.text, within=15.0)
        assert live.count == 2
    finally:
        await live.close()
        await proxy.cut()
        await one.close()
        await two.close()
