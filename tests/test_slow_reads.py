"""A slow dashboard or management read never stalls the API: on SQLite it runs on a reader
thread, on PostgreSQL it awaits the server (issue 21, part 1)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from conftest import Harness

from tally.models import Permission
from tally.storage.dashboard import DashboardTables

pytestmark = pytest.mark.serial  # the API's latency beside a slow read: alone on the machine


def slow(steps: int) -> str:
    """A query that keeps the database busy for a while, on both backends, whatever the
    data: about `steps` x 0.3 us."""
    return (
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {steps}) "
        "SELECT count(*) FROM n"
    )


async def test_api_answers_while_a_slow_list_runs(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the counter list waits for a slow query, ups are answered promptly."""
    h = harness
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    write = await h.token(ws, Permission.WRITE)
    assert (await h.get("/v2/ws/c/up", write)).status_code == 200
    store = h.store
    assert isinstance(store, DashboardTables)
    fetch = store._fetch
    calls = 0
    # one query of about 0.6 s on this machine, now (a fast one or a loaded one)
    started = time.monotonic()
    await fetch(slow(200_000))
    steps = min(50_000_000, int(200_000 * 0.6 / max(time.monotonic() - started, 0.001)))

    async def slow_fetch(sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        nonlocal calls
        calls += 1
        await fetch(slow(steps))
        return await fetch(sql, params)

    monkeypatch.setattr(store, "_fetch", slow_fetch)
    started = time.monotonic()
    listing = asyncio.create_task(h.get("/v2/ws/-/counters", admin))
    await asyncio.sleep(0.05)
    latencies: list[float] = []
    while not listing.done() and len(latencies) < 50:
        sent = time.monotonic()
        assert (await h.get("/v2/ws/c/up", write)).status_code == 200
        latencies.append(time.monotonic() - sent)
    assert (await listing).status_code == 200
    took = time.monotonic() - started
    assert calls >= 1
    assert took > 0.3, "the slow query was too quick to tell anything"
    assert latencies, "the list answered before any up was sent"
    # a blocked loop answers the first up only after the list: about `took`
    assert max(latencies) < took / 3, (latencies, took)
