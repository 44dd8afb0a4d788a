"""The group commit with checked changes and sets: batch placement, overlays, refusals."""

from __future__ import annotations

import asyncio

from test_writes import FlakyStore, counter, read, started

from tally.models import CHECK_BOUNDS, Counter, CounterChange
from tally.storage import Store

__all__ = ["counter"]  # the fixture, shared with test_writes


async def test_a_checked_change_is_alone_for_its_counter_in_its_batch(
    store: Store, counter: Counter
) -> None:
    """A checked change starts a new batch if the counter has a change in the open one,
    and the next change of the counter starts another; other counters share batches."""
    writes = await started(store, durability="buffered", flush_interval=3600)
    try:
        plain = writes.add(counter.id, 1, 0, 1.0)
        checked = writes.add(counter.id, 1, 0, 1.0, CHECK_BOUNDS)
        after = writes.add(counter.id, 1, 0, 1.0)
        assert plain.batch is not checked.batch
        assert checked.batch is not after.batch
        other = writes.add(counter.id + 1000, 1, 0, 1.0)
        assert other.batch is after.batch
    finally:
        await writes.stop()


async def test_set_orders_the_nodes_changes(store: Store, counter: Counter) -> None:
    """Changes accepted before a set are replaced by it, later ones add to it."""
    writes = await started(store)
    try:
        before = writes.add(counter.id, 5, 0, 1.0)
        set_ticket = writes.set(counter.id, 100, 0, 1.0)
        after = writes.add(counter.id, 2, 1, 1.0)
        assert before.batch is not set_ticket.batch
        assert after.batch is set_ticket.batch
        results = await asyncio.gather(*(writes.wait(t) for t in (before, set_ticket, after)))
        assert [(r.up_count, r.down_count) for r in results] == [(5, 0), (100, 0), (102, 1)]
        assert await read(store, writes) == (102, 1)
        history = await store.read_history(counter.id)
        assert sum(b[1] for b in history.buckets) == 102
        assert sum(b[2] for b in history.buckets) == 1
    finally:
        await writes.stop()


async def test_a_checked_change_is_read_only_once_accepted(store: Store, counter: Counter) -> None:
    """A pending checked change is not in the overlay (it may be refused); once its batch
    committed and accepted it, it is, and a refused one never is, even from a
    committed batch kept for a read in flight."""
    await store.change_counter(counter.id, CounterChange(bounds=(None, 3), origins=()))
    flaky = FlakyStore(store)
    writes = await started(flaky)
    try:
        flaky.hold = asyncio.Event()
        epoch = writes.begin_read()  # a read in flight: committed batches stay overlaid
        ok = writes.add(counter.id, 2, 0, 1.0, CHECK_BOUNDS)
        assert writes.overlay(counter.id, 0, 0, 0.0, 0)[:2] == (0, 0)
        await flaky.held.wait()
        assert writes.overlay(counter.id, 0, 0, 0.0, 0)[:2] == (0, 0)  # committing
        flaky.hold.set()
        assert (await writes.wait(ok)).up_count == 2
        assert writes.overlay(counter.id, 0, 0, 0.0, 0)[:2] == (2, 0)  # a snapshot before it
        flaky.hold = None
        refused = writes.add(counter.id, 2, 0, 1.0, CHECK_BOUNDS)
        totals = await writes.wait(refused)
        assert (totals.up_count, totals.refused) == (2, True)
        assert writes.retained == 2
        assert writes.overlay(counter.id, 0, 0, 0.0, 0)[:2] == (2, 0)
        assert writes.overlay_hours(counter.id, 0) == [(0, 2, 0)]
        writes.end_read(epoch)
        assert await read(store, writes) == (2, 0)
    finally:
        await writes.stop()


async def test_a_committed_set_kept_for_a_read_carries_its_adjustment(
    store: Store, counter: Counter
) -> None:
    """A read whose snapshot predates a set's commit adds the set's batch with its
    history adjustment (known once committed), so its stats sum to its totals."""
    writes = await started(store)
    try:
        await writes.wait(writes.add(counter.id, 7, 0, 1.0))
        epoch = writes.begin_read()
        await writes.wait(writes.set(counter.id, 100, 0, 1.0))
        up, down, _ = writes.overlay(counter.id, 7, 0, 0.0, 1)  # the snapshot before it
        hours = writes.overlay_hours(counter.id, 1)
        assert (up, down) == (100, 0)
        assert hours == [(0, 93, 0)]
        writes.end_read(epoch)
    finally:
        await writes.stop()
