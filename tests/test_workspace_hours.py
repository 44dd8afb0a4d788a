"""The workspaces' hourly totals (workspace_hours, migrations sqlite/0013 and
postgresql/0016) against the buckets they sum: after any sequence of batches (ups,
downs, resets, checked changes kept or refused, sets that record their difference,
changes of counters deleted meanwhile), counter deletes, workspace deletes and imports,
across counters and workspaces, each (workspace, hour) total is the sum of its counters'
buckets of that hour. Both backends; on PostgreSQL also two nodes at once, with deletes
in between, and the migration's backfill."""

from __future__ import annotations

import asyncio
import random
from contextlib import AsyncExitStack
from typing import Any

import pytest

from tally.models import (
    CHECK_BOUNDS,
    CHECK_BOUNDS_AND_ZERO,
    BatchChanges,
    CounterDelta,
    CounterRecord,
)
from tally.storage import Store, migrations, store_from_url
from tally.storage.migrations import Migration
from tally.storage.overview import Scope

BASE_HOUR = 490_000
Key = tuple[int, int]


async def rollup(store: Any) -> dict[Key, tuple[int, int]]:
    rows = await store._fetch("SELECT workspace_id, hour, up, down FROM workspace_hours", ())
    return {(int(w), int(h)): (int(u), int(d)) for w, h, u, d in rows if (u, d) != (0, 0)}


async def summed(store: Any) -> dict[Key, tuple[int, int]]:
    rows = await store._fetch(
        "SELECT c.workspace_id, h.hour, SUM(h.up), SUM(h.down) FROM counter_hours h "
        "JOIN counters c ON c.id = h.counter_id GROUP BY c.workspace_id, h.hour",
        (),
    )
    return {(int(w), int(h)): (int(u), int(d)) for w, h, u, d in rows if (u, d) != (0, 0)}


async def assert_exact(store: Store) -> dict[Key, tuple[int, int]]:
    expected = await summed(store)
    assert await rollup(store) == expected
    return expected


def random_delta(rng: random.Random, cid: int, hours: dict[Key, list[int]]) -> CounterDelta:
    """One counter's change in a batch, its buckets added to `hours`."""
    kind = rng.choice(["up", "up", "down", "reset", "checked", "set", "set"])
    hour = BASE_HOUR + rng.randrange(4)
    if kind == "set":  # the difference to the totals replaced goes in `record`'s bucket
        hours.setdefault((cid, hour), [0, 0])  # locked in order, as GroupCommit.set does
        return CounterDelta(
            reset=True, base_up=rng.randrange(20), base_down=rng.randrange(5), record=hour
        )
    up = rng.randrange(1, 6) if kind != "down" else 0
    down = rng.randrange(1, 4) if kind in ("down", "checked") and rng.random() < 0.7 else 0
    for _ in range(rng.randrange(1, 3)):  # one bucket or two
        h = BASE_HOUR + rng.randrange(4)
        bucket = hours.setdefault((cid, h), [0, 0])
        share_up, share_down = rng.randrange(up + 1), rng.randrange(down + 1)
        bucket[0] += share_up
        bucket[1] += share_down
        up, down = up - share_up, down - share_down
    bucket = hours.setdefault((cid, hour), [0, 0])
    bucket[0] += up
    bucket[1] += down
    total_up = sum(v[0] for k, v in hours.items() if k[0] == cid)
    total_down = sum(v[1] for k, v in hours.items() if k[0] == cid)
    check = rng.choice([CHECK_BOUNDS, CHECK_BOUNDS_AND_ZERO]) if kind == "checked" else 0
    return CounterDelta(total_up, total_down, reset=kind == "reset", check=check)


class Scenario:
    """Random changes to a store's counters, workspaces and imports."""

    def __init__(self, stores: list[Store], seed: int) -> None:
        self.stores = stores
        self.rng = random.Random(seed)
        self.seqs = [0] * len(stores)
        self.workspaces: list[int] = []
        self.counters: dict[int, list[int]] = {}  # workspace -> its counters
        self.gone: list[int] = []  # deleted counters (a late batch may still name one)
        self.made = 0

    async def workspace(self) -> None:
        self.made += 1
        ws = await self.stores[0].create_workspace(f"w{self.made}", "w")
        self.workspaces.append(ws.id)
        self.counters[ws.id] = []
        for _ in range(3):
            await self.counter(ws.id)

    async def counter(self, workspace_id: int) -> None:
        self.made += 1
        c = await self.stores[0].create_counter(workspace_id, f"c{self.made}")
        self.counters[workspace_id].append(c.id)
        if self.rng.random() < 0.5:  # bounds, for checked changes to cross
            await self.stores[0]._change(  # type: ignore[attr-defined]
                [
                    (
                        "UPDATE counters SET min_value = %s, max_value = %s WHERE id = %s",
                        (self.rng.randrange(-5, 1), self.rng.randrange(0, 15), c.id),
                    )
                ]
            )

    def batch(self, node: int) -> BatchChanges:
        every = [cid for ids in self.counters.values() for cid in ids]
        chosen = self.rng.sample(every, min(len(every), self.rng.randrange(1, 6)))
        if self.gone and self.rng.random() < 0.3:
            chosen.append(self.rng.choice(self.gone))
        hours: dict[Key, list[int]] = {}
        counters = {cid: random_delta(self.rng, cid, hours) for cid in chosen}
        self.seqs[node] += 1
        return BatchChanges(seq=self.seqs[node], counters=counters, hours=hours)

    async def delete_counter(self) -> None:
        ws = self.rng.choice(self.workspaces)
        if self.counters[ws]:
            cid = self.counters[ws].pop(self.rng.randrange(len(self.counters[ws])))
            assert await self.stores[-1].delete_counter(cid)
            self.gone.append(cid)

    async def delete_workspace(self) -> None:
        ws = self.workspaces.pop(self.rng.randrange(len(self.workspaces)))
        self.gone += self.counters.pop(ws)
        assert await self.stores[-1].delete_workspace(ws)

    async def import_some(self) -> None:
        ws = self.rng.choice(self.workspaces)
        names = {
            c.id: c.name for c in await self.stores[0].list_counters(ws)
        }  # existing ones are rewritten, a new one is created
        self.made += 1
        picked = [*self.rng.sample(sorted(names.values()), min(2, len(names))), f"c{self.made}"]
        records = []
        for name in picked:
            hours = sorted(
                {
                    BASE_HOUR + h: (self.rng.randrange(9), self.rng.randrange(3)) for h in range(5)
                }.items()
            )[: self.rng.randrange(0, 5)]
            records.append(
                CounterRecord(
                    name=name,
                    description="",
                    private=False,
                    up_count=sum(u for _, (u, _d) in hours),
                    down_count=sum(d for _, (_u, d) in hours),
                    created_at=1.0,
                    updated_at=2.0,
                    hours=tuple((h, u, d) for h, (u, d) in hours),
                )
            )
        await self.stores[0].import_counters(ws, records)
        known = set(self.counters[ws])
        self.counters[ws] += [
            c.id for c in await self.stores[0].list_counters(ws) if c.id not in known
        ]

    async def step(self) -> None:
        roll = self.rng.random()
        if len(self.workspaces) < 2:
            await self.workspace()
        elif roll < 0.6:
            node = self.rng.randrange(len(self.stores))
            await self.stores[node].apply(self.batch(node))
        elif roll < 0.7:
            await self.delete_counter()
        elif roll < 0.75:
            await self.counter(self.rng.choice(self.workspaces))
        elif roll < 0.9:
            await self.import_some()
        else:
            await self.delete_workspace()


@pytest.mark.parametrize("seed", range(3))
async def test_totals_are_the_sum_of_the_buckets_after_any_changes(store: Store, seed: int) -> None:
    """Each step changes something; after each, every (workspace, hour) total is the
    sum of the buckets; the overview's bars from the totals equal those from the
    buckets (a scope of every counter reads the buckets)."""
    scenario = Scenario([store], seed)
    seen = 0
    for _ in range(60):
        await scenario.step()
        seen += len(await assert_exact(store))
        for ws in scenario.workspaces:
            starts = [BASE_HOUR, BASE_HOUR + 2]
            every = Scope(public_only=True, included=tuple(scenario.counters[ws]))
            by_buckets = await store.period_bars(ws, starts, BASE_HOUR + 5, BASE_HOUR - 1, every)
            assert await store.period_bars(ws, starts, BASE_HOUR + 5, BASE_HOUR - 1) == by_buckets
    assert seen > 0  # the sums were not all empty


async def test_two_nodes_at_once_with_deletes_between(store_url: str) -> None:
    """Two nodes applying batches over the same workspaces and hours at the same time
    (plain, checked, sets), with counter deletes running alongside, imports between:
    nothing deadlocks or fails, and the totals stay exact."""
    async with AsyncExitStack() as stack:
        stores = []
        for node in ("one", "two"):
            s = store_from_url(store_url, node=node)
            await s.open()
            stack.push_async_callback(s.close)
            stores.append(s)
        scenario = Scenario(stores, 7)
        await scenario.workspace()
        await scenario.workspace()
        for _ in range(4):
            await scenario.counter(scenario.workspaces[0])
        for _ in range(25):
            await asyncio.gather(
                stores[0].apply(scenario.batch(0)),
                stores[1].apply(scenario.batch(1)),
                scenario.delete_counter() if scenario.rng.random() < 0.3 else asyncio.sleep(0),
            )
            if scenario.rng.random() < 0.2:  # not alongside: see docs/performance.md
                await scenario.import_some()
        await assert_exact(stores[0])


async def test_the_migration_sums_the_buckets_already_there(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database from before the totals (its schema up to the migration before theirs)
    with buckets in two workspaces: the migration fills the totals with their sums."""
    real = migrations.load

    def before(dialect: str) -> list[Migration]:
        every = real(dialect)
        return every[: next(i for i, m in enumerate(every) if "workspace_hours" in m.name)]

    monkeypatch.setattr(migrations, "load", before)
    store = store_from_url(store_url, node="n")
    await store.open()
    try:
        for w in range(2):
            ws = await store.create_workspace(f"w{w}", "w")
            for k in range(3):
                c = await store.create_counter(ws.id, f"c{k}")
                await store._change(  # type: ignore[attr-defined]
                    [  # this code's batches write the totals: the buckets as SQL
                        (
                            "INSERT INTO counter_hours (counter_id, hour, up, down) "
                            "VALUES (%s, %s, %s, %s)",
                            (c.id, BASE_HOUR + h, w + k + h, h),
                        )
                        for h in range(3)
                    ]
                )
        expected = await summed(store)
        assert len(expected) == 6
    finally:
        await store.close()
    monkeypatch.setattr(migrations, "load", real)
    store = store_from_url(store_url, node="n")
    await store.open()
    try:
        assert await rollup(store) == expected
    finally:
        await store.close()
