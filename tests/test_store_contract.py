"""The Store contract: every backend must pass this suite unchanged."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tally.errors import Conflict, StorageError
from tally.models import BatchChanges, CounterDelta, Permission
from tally.storage import Store, store_from_url
from tally.storage.migrations import load


@contextlib.asynccontextmanager
async def two_nodes(store_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, as nodes "one" and "two"."""
    one = store_from_url(store_url, node="one")
    two = store_from_url(store_url, node="two")
    await one.open()
    await two.open()
    try:
        yield one, two
    finally:
        await one.close()
        await two.close()


def batch(
    seq: int,
    *items: tuple[int, CounterDelta],
    hours: dict[tuple[int, int], list[int]] | None = None,
) -> BatchChanges:
    return BatchChanges(seq=seq, counters=dict(items), hours=hours or {})


async def test_schema_is_current_and_reopening_migrates_nothing(store_url: str) -> None:
    """Opening brings the schema to the newest version; a second open is a no-op."""
    for _ in range(2):
        s = store_from_url(store_url, node="n")
        await s.open()
        assert await s.schema_version() == len(load(getattr(s, "dialect", "sqlite")))
        await s.close()


async def test_workspaces(store: Store) -> None:
    """Workspaces are created once per slug, found by slug and listed by slug."""
    b = await store.create_workspace("beta", "Beta")
    a = await store.create_workspace("alpha", "Alpha")
    assert (await store.get_workspace("beta")) == b
    assert await store.get_workspace("gamma") is None
    assert [w.slug for w in await store.list_workspaces()] == ["alpha", "beta"]
    assert a.id != b.id
    assert a.created_at > 0
    with pytest.raises(Conflict):
        await store.create_workspace("alpha", "again")


async def test_tokens(store: Store) -> None:
    """Tokens are found by hash, listed per workspace and revoked once."""
    ws = await store.create_workspace("ws", "ws")
    other = await store.create_workspace("other", "other")
    t = await store.create_token(ws.id, "ci", "tly_abcdefgh", "h1", Permission.WRITE)
    await store.create_token(other.id, "", "tly_zzzzzzzz", "h2", Permission.READ)
    assert t.workspace_slug == "ws"
    assert t.permission is Permission.WRITE
    assert t.revoked_at is None
    assert await store.find_token("h1") == t
    assert await store.find_token("nope") is None
    assert [x.id for x in await store.list_tokens(ws.id)] == [t.id]
    assert await store.revoke_token(t.id) is True
    assert await store.revoke_token(t.id) is False
    assert await store.revoke_token(9999) is False
    found = await store.find_token("h1")
    assert found is not None
    assert found.revoked_at is not None
    with pytest.raises(Conflict):
        await store.create_token(ws.id, "", "tly_x", "h1", Permission.READ)


async def test_counters(store: Store) -> None:
    """Counters are unique per workspace, keep their flags and start at zero."""
    ws = await store.create_workspace("ws", "ws")
    other = await store.create_workspace("other", "other")
    c = await store.create_counter(ws.id, "hits", private=True, description="page hits")
    assert (c.name, c.private, c.description, c.up_count, c.down_count) == (
        "hits",
        True,
        "page hits",
        0,
        0,
    )
    assert c.workspace_slug == "ws"
    assert c.created_at == c.updated_at
    await store.create_counter(other.id, "hits")
    with pytest.raises(Conflict):
        await store.create_counter(ws.id, "hits")
    assert await store.read_counter("ws", "hits") == c
    assert await store.read_counter("ws", "HITS") is None
    assert await store.read_counter("nope", "hits") is None
    assert [x.name for x in await store.list_counters(ws.id)] == ["hits"]


async def test_ensure_counter_is_idempotent_under_races(store: Store) -> None:
    """Concurrent ensure_counter calls create one public counter."""
    ws = await store.create_workspace("ws", "ws")
    made = await asyncio.gather(*(store.ensure_counter(ws.id, "new") for _ in range(20)))
    assert len({c.id for c in made}) == 1
    assert made[0].private is False
    assert len(await store.list_counters(ws.id)) == 1


async def test_apply_adds_deltas_and_records_seq(store: Store) -> None:
    """apply adds deltas, returns the committed totals, and the next snapshot carries its seq."""
    ws = await store.create_workspace("ws", "ws")
    a = await store.create_counter(ws.id, "a")
    b = await store.create_counter(ws.id, "b")
    out = await store.apply(
        batch(
            1,
            (a.id, CounterDelta(3, 1, False, a.created_at + 5)),
            (b.id, CounterDelta(0, 2, False, b.created_at + 1)),
        )
    )
    assert (out[a.id].up_count, out[a.id].down_count) == (3, 1)
    assert out[a.id].updated_at == a.created_at + 5
    out = await store.apply(batch(2, (a.id, CounterDelta(2, 0, False, a.created_at + 1))))
    assert (out[a.id].up_count, out[a.id].down_count) == (5, 1)
    assert out[a.id].updated_at == a.created_at + 5  # never moves backwards
    read = await store.read_counter("ws", "a")
    assert read is not None
    assert (read.up_count, read.down_count, read.seq) == (5, 1, 2)


async def test_apply_reset_then_deltas(store: Store) -> None:
    """A reset delta zeroes both totals before adding its own up/down."""
    ws = await store.create_workspace("ws", "ws")
    a = await store.create_counter(ws.id, "a")
    await store.apply(batch(1, (a.id, CounterDelta(7, 4, False, a.created_at))))
    out = await store.apply(batch(2, (a.id, CounterDelta(2, 1, True, a.created_at))))
    assert (out[a.id].up_count, out[a.id].down_count) == (2, 1)


async def test_apply_skips_missing_counters(store: Store) -> None:
    """A delta for a counter that no longer exists is dropped, not an error."""
    ws = await store.create_workspace("ws", "ws")
    a = await store.create_counter(ws.id, "a")
    out = await store.apply(
        batch(1, (a.id, CounterDelta(1, 0, False, 0.0)), (424242, CounterDelta(1, 0, False, 0.0)))
    )
    assert set(out) == {a.id}


async def test_hours_accumulate_and_history_carries_seq(store: Store) -> None:
    """Hourly buckets add up across batches; read_history returns them with the snapshot seq."""
    ws = await store.create_workspace("ws", "ws")
    a = await store.create_counter(ws.id, "a")
    hour = 490_000
    await store.apply(
        batch(1, (a.id, CounterDelta(2, 0, False, 0.0)), hours={(a.id, hour): [2, 0]})
    )
    await store.apply(
        batch(
            2,
            (a.id, CounterDelta(1, 1, False, 0.0)),
            hours={(a.id, hour): [1, 0], (a.id, hour + 1): [0, 1]},
        )
    )
    history = await store.read_history(a.id)
    assert sorted(history.buckets) == [(hour, 3, 0), (hour + 1, 0, 1)]
    assert history.seq == 2


async def test_seq_is_per_node(store_url: str) -> None:
    """Each node sees its own last seq; register_node resumes it after a restart."""
    async with two_nodes(store_url) as (one, two):
        ws = await one.create_workspace("ws", "ws")
        a = await one.create_counter(ws.id, "a")
        await one.apply(batch(7, (a.id, CounterDelta(1, 0, False, 0.0))))
        seen_by_two = await two.read_counter("ws", "a")
        assert seen_by_two is not None
        assert (seen_by_two.up_count, seen_by_two.seq) == (1, 0)
        assert await one.register_node() == 7
        assert await two.register_node() == 0


async def test_heartbeats_count_the_live_nodes(store_url: str) -> None:
    """A node counts itself and every node that claimed its name or beat within the
    window, and a node whose last beat is older drops out of the count."""
    async with two_nodes(store_url) as (one, two):
        await one.claim_node()
        await two.claim_node()
        assert await one.heartbeat(60.0) == 2
        await asyncio.sleep(0.3)
        assert await one.heartbeat(0.2) == 1  # two's claim is 0.3 s old
        assert await two.heartbeat(0.2) == 2  # one just beat
        assert await one.heartbeat(0.2) == 2


async def test_meta_get_or_set_keeps_the_first_value(store: Store) -> None:
    """meta_get_or_set stores the default once and returns the stored value after."""
    assert await store.meta_get_or_set("k", "first") == "first"
    assert await store.meta_get_or_set("k", "second") == "first"


async def test_apply_is_idempotent_per_seq(store: Store) -> None:
    """Applying a batch this node already committed again changes nothing."""
    ws = await store.create_workspace("ws", "ws")
    a = await store.create_counter(ws.id, "a")
    changes = batch(3, (a.id, CounterDelta(2, 1, False, 0.0)), hours={(a.id, 1): [2, 1]})
    first = await store.apply(changes)
    again = await store.apply(changes)
    assert again == first
    assert (first[a.id].up_count, first[a.id].down_count) == (2, 1)
    history = await store.read_history(a.id)
    assert history.buckets == [(1, 2, 1)]


async def test_a_missing_workspace_is_not_a_conflict(store: Store) -> None:
    """Only a taken name is a Conflict; other integrity failures are storage errors."""
    with pytest.raises(StorageError):
        await store.create_counter(424242, "orphan")


async def test_history_can_be_read_by_hour_range(store: Store) -> None:
    """read_history returns the buckets with since_hour <= hour < before_hour."""
    ws = await store.create_workspace("ws", "ws")
    a = await store.create_counter(ws.id, "a")
    hours = {(a.id, h): [h, 0] for h in (10, 20, 30)}
    await store.apply(batch(1, (a.id, CounterDelta(60, 0, False, 0.0)), hours=hours))
    assert sorted((await store.read_history(a.id, since_hour=20)).buckets) == [
        (20, 20, 0),
        (30, 30, 0),
    ]
    assert (await store.read_history(a.id, before_hour=20)).buckets == [(10, 10, 0)]
    assert (await store.read_history(a.id, since_hour=11, before_hour=30)).buckets == [(20, 20, 0)]


async def test_nodes_applying_overlapping_batches_at_once(store_url: str) -> None:
    """Two nodes committing batches over the same counters at the same time (many
    counters or one, hours included) never deadlock and lose nothing."""
    async with two_nodes(store_url) as (one, two):
        ws = await one.create_workspace("ws", "ws")
        ids = [(await one.create_counter(ws.id, f"c{i}")).id for i in range(4)]
        hour = 490_000
        ups = dict.fromkeys(ids, 0)
        downs = dict.fromkeys(ids, 0)
        for seq in range(1, 41):
            mine = ids if seq % 3 else ids[seq % 4 : seq % 4 + 1]
            theirs = list(reversed(ids)) if seq % 2 else ids[:2]
            for i in mine:
                ups[i] += 1
            for i in theirs:
                downs[i] += 1
            await asyncio.gather(
                one.apply(
                    batch(
                        seq,
                        *((i, CounterDelta(1, 0, False, 0.0)) for i in mine),
                        hours={(i, hour): [1, 0] for i in mine},
                    )
                ),
                two.apply(
                    batch(
                        seq,
                        *((i, CounterDelta(0, 1, False, 0.0)) for i in theirs),
                        hours={(i, hour + seq % 2): [0, 1] for i in theirs},
                    )
                ),
            )
        for k, i in enumerate(ids):
            counter = await one.read_counter("ws", f"c{k}")
            assert counter is not None
            assert (counter.up_count, counter.down_count) == (ups[i], downs[i])
            history = await one.read_history(i)
            assert sum(b[1] for b in history.buckets) == ups[i]
            assert sum(b[2] for b in history.buckets) == downs[i]


async def test_settle_finds_a_batch_that_committed(store: Store) -> None:
    """settle after a lost answer: a committed batch gives its counters' totals."""
    ws = await store.create_workspace("ws", "ws")
    a = await store.create_counter(ws.id, "a")
    changes = batch(1, (a.id, CounterDelta(4, 1, False, 0.0)))
    await store.apply(changes)
    totals = await store.settle(changes)
    assert totals is not None
    assert (totals[a.id].up_count, totals[a.id].down_count) == (4, 1)
    assert await store.settle(changes) is not None  # asking again says the same


async def test_settle_fences_a_batch_that_never_arrived(store: Store) -> None:
    """settle of a batch that did not commit: None, and the batch arriving later (a call
    the network delivered late) changes nothing; later batches apply as usual."""
    ws = await store.create_workspace("ws", "ws")
    a = await store.create_counter(ws.id, "a")
    lost = batch(3, (a.id, CounterDelta(5, 0, False, 0.0)), hours={(a.id, 10): [5, 0]})
    assert await store.settle(lost) is None
    assert await store.settle(lost) is None  # a settle whose answer was lost: same answer
    await store.apply(lost)
    counts = await store.read_counts(a.id)
    assert counts is not None
    assert counts[:2] == (0, 0)
    assert (await store.read_history(a.id)).buckets == []
    nxt = await store.apply(batch(4, (a.id, CounterDelta(1, 0, False, 0.0))))
    assert nxt[a.id].up_count == 1
    assert await store.settle(batch(4, (a.id, CounterDelta(1, 0, False, 0.0)))) is not None


async def test_claim_node_refuses_a_name_in_use(store_url: str) -> None:
    """Two live nodes with one name would skip each other's batches: a second claim of a
    name fails with Conflict."""
    async with two_nodes(store_url) as (one, two):
        await one.claim_node()
        await two.claim_node()
        same = store_from_url(store_url, node="one")
        await same.open()
        try:
            with pytest.raises(Conflict, match="already in use"):
                await same.claim_node()
        finally:
            await same.close()
