"""The Store contract for counter rules (issue 12): workspace and counter settings,
checked changes against bounds, and sets recorded in the history; every backend."""

from __future__ import annotations

import asyncio

from test_store_contract import batch, two_nodes

from tally.models import CHECK_BOUNDS, CHECK_BOUNDS_AND_ZERO, CounterChange, CounterDelta
from tally.storage import Store

HOUR = 490_000


def checked(up: int, down: int, check: int = CHECK_BOUNDS) -> CounterDelta:
    return CounterDelta(up, down, False, 1.0, check=check)


def set_to(up: int, down: int, *, then_up: int = 0, check: int = 0) -> CounterDelta:
    return CounterDelta(then_up, 0, True, 1.0, up, down, check=check, record=HOUR)


async def test_workspace_and_counter_rules_round_trip(store: Store) -> None:
    """Rules are stored, read back with the counter (and its workspace's) and replaced."""
    ws = await store.create_workspace("ws", "ws")
    assert (ws.v1_open, ws.origins) == (False, ())
    c = await store.create_counter(ws.id, "c")
    assert (c.floor, c.ceiling, c.origins, c.workspace_origins, c.v1_open) == (
        None,
        None,
        (),
        (),
        False,
    )
    sites = ("https://a.example", "http://localhost:8080")
    updated = await store.set_workspace_rules(ws.id, v1_open=True, origins=sites)
    assert updated is not None
    assert (updated.v1_open, updated.origins) == (True, sites)
    assert await store.get_workspace("ws") == updated
    rules = await store.change_counter(c.id, CounterChange(bounds=(-5, 10), origins=sites[:1]))
    assert rules is not None
    read = await store.read_counter("ws", "c")
    assert read == rules
    assert (read.floor, read.ceiling, read.origins) == (-5, 10, sites[:1])
    assert (read.workspace_origins, read.v1_open, read.bounded) == (sites, True, True)
    assert read.allowed_origins == sites[:1]
    cleared = await store.change_counter(c.id, CounterChange(bounds=(None, None), origins=()))
    assert cleared is not None
    assert (cleared.bounded, cleared.allowed_origins) == (False, sites)
    assert await store.change_counter(424242, CounterChange(bounds=(1, 2), origins=())) is None
    assert await store.set_workspace_rules(424242, v1_open=True, origins=()) is None


async def test_a_workspace_is_created_with_its_rules(store: Store) -> None:
    """The V1 flag and allowed origins given at creation are saved with the workspace
    (one transaction: `tally workspace create --v1`, an import)."""
    sites = ("https://a.example",)
    ws = await store.create_workspace("ws", "ws", v1_open=True, origins=sites)
    assert (ws.v1_open, ws.origins) == (True, sites)
    assert await store.get_workspace("ws") == ws


async def test_checked_changes_stop_at_the_bounds(store: Store) -> None:
    """A checked up past the ceiling or down past the floor changes nothing, its hourly
    bucket included, and comes back refused; one within the bounds is applied."""
    ws = await store.create_workspace("ws", "ws")
    c = await store.create_counter(ws.id, "stock")
    await store.change_counter(c.id, CounterChange(bounds=(0, 10), origins=()))
    out = await store.apply(batch(1, (c.id, checked(8, 0)), hours={(c.id, HOUR): [8, 0]}))
    assert (out[c.id].up_count, out[c.id].refused) == (8, False)
    out = await store.apply(batch(2, (c.id, checked(3, 0)), hours={(c.id, HOUR): [3, 0]}))
    assert (out[c.id].up_count, out[c.id].down_count, out[c.id].refused) == (8, 0, True)
    out = await store.apply(batch(3, (c.id, checked(2, 0)), hours={(c.id, HOUR): [2, 0]}))
    assert (out[c.id].up_count, out[c.id].refused) == (10, False)
    out = await store.apply(batch(4, (c.id, checked(0, 11)), hours={(c.id, HOUR): [0, 11]}))
    assert (out[c.id].down_count, out[c.id].refused) == (0, True)
    out = await store.apply(batch(5, (c.id, checked(0, 10)), hours={(c.id, HOUR): [0, 10]}))
    assert (out[c.id].up_count, out[c.id].down_count, out[c.id].refused) == (10, 10, False)
    assert (await store.read_history(c.id)).buckets == [(HOUR, 10, 10)]


async def test_a_counter_outside_its_bounds_may_move_back(store: Store) -> None:
    """Only the bound a change moves towards is checked: a counter below its floor may go
    up, and an up is never refused by the floor."""
    ws = await store.create_workspace("ws", "ws")
    c = await store.create_counter(ws.id, "c")
    await store.apply(batch(1, (c.id, CounterDelta(5, 0, False, 1.0))))
    await store.change_counter(c.id, CounterChange(bounds=(5, None)))
    await store.apply(batch(2, (c.id, CounterDelta(0, 5, False, 1.0))))  # unchecked: at 0
    out = await store.apply(batch(3, (c.id, checked(1, 0))))
    assert (out[c.id].up_count, out[c.id].down_count, out[c.id].refused) == (6, 5, False)
    out = await store.apply(batch(4, (c.id, checked(0, 1))))
    assert out[c.id].refused


async def test_the_v1_check_floors_at_zero(store: Store) -> None:
    """CHECK_BOUNDS_AND_ZERO refuses a down below 0 on a counter without a floor."""
    ws = await store.create_workspace("ws", "ws")
    c = await store.create_counter(ws.id, "c")
    out = await store.apply(batch(1, (c.id, checked(0, 1, CHECK_BOUNDS_AND_ZERO))))
    assert (out[c.id].down_count, out[c.id].refused) == (0, True)
    out = await store.apply(batch(2, (c.id, checked(0, 1))))  # no bounds: applied
    assert (out[c.id].down_count, out[c.id].refused) == (1, False)


async def test_a_set_replaces_the_totals_and_records_the_difference(store: Store) -> None:
    """A set replaces the totals, adds the difference to its hour's bucket (so the
    buckets sum to the totals), and ups after it in the batch add to it."""
    ws = await store.create_workspace("ws", "ws")
    c = await store.create_counter(ws.id, "c")
    await store.apply(
        batch(
            1,
            (c.id, CounterDelta(7, 2, False, 1.0)),
            hours={(c.id, HOUR - 5): [7, 2]},
        )
    )
    changes = batch(2, (c.id, set_to(100, 1, then_up=3)), hours={(c.id, HOUR): [3, 0]})
    out = await store.apply(changes)
    assert (out[c.id].up_count, out[c.id].down_count, out[c.id].refused) == (103, 1, False)
    assert out[c.id].replaced == (7, 2)  # the totals it replaced
    assert (await store.apply(changes))[c.id].replaced is None  # a retry: not known
    history = await store.read_history(c.id)
    assert sorted(history.buckets) == [(HOUR - 5, 7, 2), (HOUR, 3 + 100 - 7, 1 - 2)]
    assert sum(b[1] for b in history.buckets) == 103
    assert sum(b[2] for b in history.buckets) == 1
    # lower again: the difference is negative
    out = await store.apply(batch(3, (c.id, set_to(10, 0)), hours={(c.id, HOUR): [0, 0]}))
    assert (out[c.id].up_count, out[c.id].down_count) == (10, 0)
    history = await store.read_history(c.id)
    assert sum(b[1] for b in history.buckets) == 10
    assert sum(b[2] for b in history.buckets) == 0


async def test_a_checked_set_outside_the_bounds_is_refused(store: Store) -> None:
    """A checked set whose value lies outside either bound changes nothing."""
    ws = await store.create_workspace("ws", "ws")
    c = await store.create_counter(ws.id, "c")
    await store.change_counter(c.id, CounterChange(bounds=(0, 100), origins=()))
    for seq, (up, down) in enumerate(((101, 0), (0, 1)), start=1):
        out = await store.apply(
            batch(seq, (c.id, set_to(up, down, check=CHECK_BOUNDS)), hours={(c.id, HOUR): [0, 0]})
        )
        assert (out[c.id].up_count, out[c.id].down_count, out[c.id].refused) == (0, 0, True)
    out = await store.apply(
        batch(3, (c.id, set_to(150, 50, check=CHECK_BOUNDS)), hours={(c.id, HOUR): [0, 0]})
    )
    assert (out[c.id].up_count, out[c.id].down_count, out[c.id].refused) == (150, 50, False)
    assert sorted((await store.read_history(c.id)).buckets) == [(HOUR, 150, 50)]


async def test_a_retry_answers_refusals_as_decided(store: Store) -> None:
    """A retry of a batch that committed (its answer lost) answers each checked change
    as it was decided, refused or not, and applies nothing again."""
    ws = await store.create_workspace("ws", "ws")
    a = await store.create_counter(ws.id, "a")
    b = await store.create_counter(ws.id, "b")
    await store.change_counter(a.id, CounterChange(bounds=(None, 1), origins=()))
    await store.change_counter(b.id, CounterChange(bounds=(None, 1), origins=()))
    await store.apply(batch(1, (a.id, checked(1, 0))))
    changes = batch(2, (a.id, checked(1, 0)), (b.id, checked(1, 0)))
    first = await store.apply(changes)
    again = await store.apply(changes)
    for out in (first, again):
        assert (out[a.id].up_count, out[a.id].refused) == (1, True)
        assert (out[b.id].up_count, out[b.id].refused) == (1, False)
    await store.apply(batch(3, (a.id, CounterDelta(0, 1, False, 1.0))))
    assert not (await store.apply(batch(3, (a.id, CounterDelta(0, 1, False, 1.0)))))[a.id].refused


async def test_settle_answers_refusals_as_decided(store: Store) -> None:
    """settle of a batch with checked changes that committed (its answer lost) marks
    the refused ones as refused, the others not; a fenced one is None."""
    ws = await store.create_workspace("ws", "ws")
    a = await store.create_counter(ws.id, "a")
    b = await store.create_counter(ws.id, "b")
    await store.change_counter(a.id, CounterChange(bounds=(None, 0), origins=()))
    await store.change_counter(b.id, CounterChange(bounds=(None, 1), origins=()))
    changes = batch(1, (a.id, checked(1, 0)), (b.id, checked(1, 0)))
    await store.apply(changes)
    settled = await store.settle(changes)
    assert settled is not None
    assert (settled[a.id].up_count, settled[a.id].refused) == (0, True)
    assert (settled[b.id].up_count, settled[b.id].refused) == (1, False)
    assert await store.settle(batch(2, (a.id, checked(0, 1)))) is None


async def test_a_mixed_batch_is_idempotent_per_seq(store: Store) -> None:
    """A batch with plain, checked and set changes applies once per seq."""
    ws = await store.create_workspace("ws", "ws")
    a = await store.create_counter(ws.id, "a")
    b = await store.create_counter(ws.id, "b")
    s = await store.create_counter(ws.id, "s")
    await store.change_counter(b.id, CounterChange(bounds=(None, 5), origins=()))
    changes = batch(
        4,
        (a.id, CounterDelta(2, 0, False, 1.0)),
        (b.id, checked(5, 0)),
        (s.id, set_to(9, 0)),
        hours={(a.id, HOUR): [2, 0], (b.id, HOUR): [5, 0], (s.id, HOUR): [0, 0]},
    )
    first = await store.apply(changes)
    again = await store.apply(changes)
    assert [(t.up_count, t.down_count) for t in (first[a.id], first[b.id], first[s.id])] == [
        (2, 0),
        (5, 0),
        (9, 0),
    ]
    assert {k: (t.up_count, t.down_count) for k, t in again.items()} == {
        k: (t.up_count, t.down_count) for k, t in first.items()
    }
    for cid, up in ((a.id, 2), (b.id, 5), (s.id, 9)):
        assert (await store.read_history(cid)).buckets == [(HOUR, up, 0)]


async def test_two_nodes_never_cross_a_ceiling_together(store_url: str) -> None:
    """Two nodes committing checked ups of one counter at once: exactly `ceiling` are
    accepted, every other one refused, the history matching; plain changes of the
    same counters in the other node's batches never deadlock with them."""
    async with two_nodes(store_url) as (one, two):
        ws = await one.create_workspace("ws", "ws")
        c = await one.create_counter(ws.id, "tickets")
        other = await one.create_counter(ws.id, "other")
        await one.change_counter(c.id, CounterChange(bounds=(None, 45), origins=()))
        accepted = 0
        for seq in range(1, 41):
            results = await asyncio.gather(
                one.apply(
                    batch(
                        seq,
                        (c.id, checked(1, 0)),
                        (other.id, CounterDelta(1, 0, False, 1.0)),
                        hours={(c.id, HOUR): [1, 0], (other.id, HOUR): [1, 0]},
                    )
                ),
                two.apply(
                    batch(
                        seq,
                        (other.id, CounterDelta(1, 0, False, 1.0)),
                        (c.id, checked(1, 0)),
                        hours={(other.id, HOUR): [1, 0], (c.id, HOUR): [1, 0]},
                    )
                ),
            )
            accepted += sum(not r[c.id].refused for r in results)
        assert accepted == 45
        read = await two.read_counter("ws", "tickets")
        assert read is not None
        assert read.up_count == 45
        assert (await one.read_history(c.id)).buckets == [(HOUR, 45, 0)]
        assert (await one.read_history(other.id)).buckets == [(HOUR, 80, 0)]
