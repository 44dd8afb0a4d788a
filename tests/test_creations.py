"""New counters in batches (issue 21, part 2): `Store.ensure_counters` creates many
names in one transaction with the quota checked name by name, and `Counters` gathers the
new names of concurrent requests into one such batch. Both backends."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import Harness
from helpers import assert_error

from tally.counters import Creations
from tally.errors import QuotaReached, StorageError
from tally.models import Counter, Permission
from tally.storage import store_from_url
from tally.storage.base import Store
from tally.storage.sqlite import SQLiteStore


async def test_a_batch_creates_finds_and_refuses_past_the_quota(store: Store) -> None:
    """One call over two workspaces: new names are created, existing ones found, the
    names past a workspace's quota refused (the last ones asked for) and not created,
    a repeated name is one counter; the counts, the lookups and the search see it."""
    store.counter_quota = 4
    a = await store.create_workspace("a", "a")
    b = await store.create_workspace("b", "b")
    old = await store.create_counter(a.id, "old")
    wanted = [(a.id, "old"), (a.id, "n1"), (b.id, "n1"), (a.id, "n2"), (a.id, "n3")]
    wanted += [(a.id, "n4"), (a.id, "n5"), (b.id, "n2")]
    got = await store.ensure_counters(wanted)
    assert len(got) == len(wanted)
    made = {(c.workspace_id, c.name): c for c in got if isinstance(c, Counter)}
    assert set(made) == {(a.id, n) for n in ("old", "n1", "n2", "n3")} | {
        (b.id, "n1"),
        (b.id, "n2"),
    }
    assert made[(a.id, "old")].id == old.id
    assert [type(c) for c in got[5:7]] == [QuotaReached, QuotaReached]
    for (ws_id, name), c in made.items():
        assert (c.workspace_id, c.name, c.up_count, c.private) == (ws_id, name, 0, False)
        assert c.workspace_slug == ("a" if ws_id == a.id else "b")
    assert await store.read_counter("a", "n4") is None
    assert await store.read_counter("a", "n5") is None
    assert await store.counter_usage(a.id) == (4, None)
    assert await store.counter_usage(b.id) == (2, None)
    assert await store.count_counters(a.id) == 4
    page = await store.counter_page(a.id, search="n3")
    assert [c.name for c in page.counters] == ["n3"]
    # again: all found, none created; the quota refuses only new names
    again = await store.ensure_counters([(a.id, "n1"), (a.id, "n1"), (a.id, "n9")])
    assert isinstance(again[0], Counter)
    assert isinstance(again[1], Counter)
    assert again[0].id == again[1].id == made[(a.id, "n1")].id
    assert isinstance(again[2], QuotaReached)
    assert await store.counter_usage(a.id) == (4, None)


async def test_two_nodes_batching_the_same_names_at_once(store_url: str) -> None:
    """Two nodes send batches of the same names in opposite orders, at once, many times
    (on PostgreSQL: each waits for the other's whole batch, never a deadlock), under a
    quota of 50 for 60 names: every name is one counter or refused, 50 in all."""
    nodes = [store_from_url(store_url, node=f"n{i}") for i in range(2)]
    for s in nodes:
        await s.open()
        s.counter_quota = 50
    try:
        ws = await nodes[0].create_workspace("ws", "ws")
        names = [f"c{i}" for i in range(60)]
        rounds = []
        for r in range(6):
            part = [(ws.id, n) for n in names[r * 10 : r * 10 + 10]]
            rounds.append(nodes[0].ensure_counters(part))
            rounds.append(nodes[1].ensure_counters(part[::-1]))
        results = await asyncio.gather(*rounds)
        ids: dict[str, int] = {}
        for got in results:
            for c in got:
                assert isinstance(c, Counter | QuotaReached), c
                if isinstance(c, Counter):
                    assert ids.setdefault(c.name, c.id) == c.id
        assert len(ids) == 50
        assert await nodes[1].counter_usage(ws.id) == (50, None)
        assert await nodes[0].count_counters(ws.id) == 50
    finally:
        for s in nodes:
            await s.close()


async def test_a_vanished_workspace_fails_only_its_names(store: Store) -> None:
    """A name of a workspace deleted meanwhile is an error of its own; the batch's
    other names are created."""
    a = await store.create_workspace("a", "a")
    gone = await store.create_workspace("gone", "gone")
    await store.delete_workspace(gone.id)
    got = await store.ensure_counters([(gone.id, "x"), (a.id, "y")])
    assert isinstance(got[0], StorageError)
    assert isinstance(got[1], Counter)
    assert got[1].name == "y"


async def test_concurrent_ups_of_new_names_share_transactions(harness: Harness) -> None:
    """80 ups at once, 40 new names each upped twice: each name is created once, counted
    twice, the two answers are 1 and 2; the creations took fewer transactions than
    names. At a quota the names past it are 403s with nothing counted, the others 200."""
    h = harness
    ws = await h.workspace()
    write = await h.token(ws, Permission.WRITE)
    assert h.app.services is not None
    creator = h.app.services.counters.creator
    before = creator.batches
    paths = [f"/v2/ws/new{i % 40}/up" for i in range(80)]
    answers = await asyncio.gather(*(h.get(p, write) for p in paths))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers[:3]]
    by_name: dict[str, list[int]] = {}
    for r in answers:
        data = r.json()["data"]
        by_name.setdefault(data["name"], []).append(data["up_count"])
    assert {n: sorted(v) for n, v in by_name.items()} == {f"new{i}": [1, 2] for i in range(40)}
    for i in range(40):
        c = await h.store.read_counter("ws", f"new{i}")
        assert c is not None
        assert c.up_count == 2
    assert 1 <= creator.batches - before < 40
    # a quota of 45: 5 more names of 12 asked for at once
    await h.store.set_counter_quota(ws.id, 45)
    answers = await asyncio.gather(*(h.get(f"/v2/ws/more{i}/up", write) for i in range(12)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * 5 + [403] * 7
    for r in answers:
        if r.status_code == 403:
            assert_error(r, 403)
    assert await h.store.counter_usage(ws.id) == (45, 45)
    counted = [await h.store.read_counter("ws", f"more{i}") for i in range(12)]
    assert sorted(c.up_count for c in counted if c is not None) == [1] * 5


async def test_a_request_that_goes_away_leaves_the_name_to_the_others(store: Store) -> None:
    """Two requests wait for the same new name; the first is cancelled: the other gets
    the counter, created once."""
    ws = await store.create_workspace("ws", "ws")
    creator = Creations(store)
    first = asyncio.create_task(creator.ensure(ws.id, "page"))
    second = asyncio.create_task(creator.ensure(ws.id, "page"))
    await asyncio.sleep(0)  # both are waiting
    first.cancel()
    counter = await second
    assert first.cancelled()
    assert counter.name == "page"
    assert creator.batches == 1
    assert await store.count_counters(ws.id) == 1


async def test_sqlite_indexes_new_names_in_bulk_and_searches_the_tail(tmp_path: Path) -> None:
    """SQLite (migration 0012): names created between two bulk indexings are found by a
    search meanwhile, exactly once before and after their indexing; renaming and
    deleting rows in the tail and in the index keeps the index sound."""
    store = SQLiteStore(tmp_path / "t.db")
    await store.open()
    try:
        ws = await store.create_workspace("ws", "ws")
        first = await store.ensure_counters([(ws.id, f"page-{i}") for i in range(5)])
        assert all(isinstance(c, Counter) for c in first)  # the first batch indexed them
        later = await store.ensure_counters([(ws.id, f"page-{i}") for i in range(5, 9)])
        ids = [c.id for c in later if isinstance(c, Counter)]

        async def found(search: str) -> list[str]:
            page = await store.counter_page(ws.id, search=search, limit=100)
            return sorted(c.name for c in page.counters)

        async def upto() -> int:
            rows = await store._fetch("SELECT upto FROM names_indexed")
            return int(rows[0][0])

        assert await upto() < min(ids)  # within INDEX_EVERY: the tail
        assert await found("page-") == sorted(f"page-{i}" for i in range(9))
        assert await found("age-7") == ["page-7"]
        rename = "UPDATE counters SET name = %s WHERE id = %s"  # no API renames (yet)
        indexed = [c.id for c in first if isinstance(c, Counter)]
        await store._change([(rename, ("renamed-5", ids[0])), (rename, ("renamed-1", indexed[1]))])
        assert await store.delete_counter(ids[1])
        assert await store.delete_counter(indexed[0])
        store._index_at = 0.0  # the next batch indexes the tail
        await store.ensure_counters([(ws.id, "page-9")])
        assert await upto() >= max(ids)
        expected = ["page-2", "page-3", "page-4", "page-7", "page-8", "page-9"]
        assert await found("page-") == expected
        assert await found("renamed-") == ["renamed-1", "renamed-5"]
        await store._change(
            [("INSERT INTO counter_names (counter_names) VALUES (%s)", ("integrity-check",))]
        )
    finally:
        await store.close()
