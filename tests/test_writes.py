"""The group commit: batching, exact per-request totals, fresh reads, failures."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tally.errors import OutcomeUnknown, StorageError, Unavailable
from tally.models import BatchChanges, Counter, Totals
from tally.storage import Store, store_from_url
from tally.writes import GroupCommit


class FlakyStore:
    """A real store whose `apply` can be made to fail or to pause after committing."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.failures = 0  # fail this many next applies
        self.hold: asyncio.Event | None = None  # when set: committed, not yet returned
        self.held = asyncio.Event()
        self.applies = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def apply(self, changes: BatchChanges) -> dict[int, Totals]:
        self.applies += 1
        if self.failures:
            self.failures -= 1
            raise StorageError("injected failure")
        result = await self.inner.apply(changes)
        if self.hold is not None:
            self.held.set()
            await self.hold.wait()
        return result


@pytest.fixture
async def flaky(store: Store) -> FlakyStore:
    return FlakyStore(store)


@pytest.fixture
async def counter(store: Store) -> Counter:
    ws = await store.create_workspace("ws", "ws")
    return await store.create_counter(ws.id, "c")


async def started(store: Store | FlakyStore, **kw: Any) -> GroupCommit:
    writes = GroupCommit(cast(Store, store), **kw)
    writes.start(await cast(Store, store).register_node())
    return writes


async def read(store: Store, writes: GroupCommit) -> tuple[int, int]:
    c = await store.read_counter("ws", "c")
    assert c is not None
    up, down, _ = writes.overlay(c.id, c.up_count, c.down_count, c.updated_at, c.seq)
    return up, down


async def test_concurrent_requests_share_transactions(store: Store, counter: Counter) -> None:
    """Many concurrent ups commit in far fewer transactions, each answered with its own value."""
    writes = await started(store)

    async def one() -> int:
        ticket = writes.add(counter.id, 1, 0, time.time())
        return (await writes.wait(ticket)).up_count

    values = await asyncio.gather(*(one() for _ in range(300)))
    await writes.stop()
    assert sorted(values) == list(range(1, 301))
    assert writes.batches_committed < 300
    assert await read(store, writes) == (300, 0)


async def test_a_cancelled_request_leaves_its_batch_alone(
    flaky: FlakyStore, counter: Counter
) -> None:
    """A request that goes away while its batch commits cancels only its own wait: the
    batch commits, the other requests get their values, and its up is counted."""
    writes = await started(flaky)
    flaky.hold = asyncio.Event()

    async def one() -> int:
        ticket = writes.add(counter.id, 1, 0, time.time())
        return (await writes.wait(ticket)).up_count

    tasks = [asyncio.create_task(one()) for _ in range(3)]
    await flaky.held.wait()  # committed, the answer not back yet
    tasks[1].cancel()
    flaky.hold.set()
    assert await tasks[0] == 1
    assert await tasks[2] == 3
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    await writes.stop()
    assert await read(flaky.inner, writes) == (3, 0)


@pytest.mark.parametrize("busy", [True, False])
async def test_a_busy_group_commit_lingers_for_the_next_batch(
    flaky: FlakyStore, counter: Counter, busy: bool
) -> None:
    """After a batch of 4 requests or more, the next batch waits `linger` to fill: two
    ups arriving 50 ms apart share one transaction. After a lone request, no wait."""
    writes = await started(flaky, linger=0.2)
    hold = flaky.hold = asyncio.Event()

    async def up() -> int:
        ticket = writes.add(counter.id, 1, 0, time.time())
        return (await writes.wait(ticket)).up_count

    first = [asyncio.create_task(up()) for _ in range(4 if busy else 1)]
    await flaky.held.wait()  # the first batch is committing
    second = asyncio.create_task(up())
    await asyncio.sleep(0)  # the second up is in the next batch
    flaky.hold = None
    hold.set()
    hold_released = asyncio.get_running_loop().time()
    for task in first:
        await task
    await asyncio.sleep(0.05)
    third = asyncio.create_task(up())
    await asyncio.gather(second, third)
    waited = asyncio.get_running_loop().time() - hold_released
    await writes.stop()
    if busy:
        assert flaky.applies == 2  # the second and third ups in one transaction
        assert waited >= 0.2
    else:
        assert flaky.applies == 3
        assert waited < 0.2


async def test_reset_inside_a_batch_keeps_every_answer_exact(
    store: Store, counter: Counter
) -> None:
    """up, up, reset, up queued together are answered 1, 2, 0, 1 and leave 1."""
    writes = await started(store, durability="buffered", flush_interval=3600)
    now = time.time()
    tickets = [
        writes.add(counter.id, 1, 0, now),
        writes.add(counter.id, 1, 0, now),
        writes.reset(counter.id, now),
        writes.add(counter.id, 1, 0, now),
    ]
    await writes.flush()
    answers = [(await writes.wait(t)).up_count for t in tickets]
    assert answers == [1, 2, 0, 1]
    assert await read(store, writes) == (1, 0)
    await writes.stop()


@pytest.mark.parametrize("kind", ["plain", "checked", "set", "two counters"])
async def test_a_buffered_change_of_a_counter_deleted_before_its_flush_leaves_no_history(
    store: Store, counter: Counter, kind: str
) -> None:
    """An up acknowledged in buffered mode, then its counter deleted, then the flush: the
    batch writes no hourly bucket for the deleted counter (nothing would ever delete it),
    whichever way the store applies it; another counter of the batch still counts."""
    other = await store.create_counter(counter.workspace_id, "other")
    writes = await started(store, durability="buffered", flush_interval=3600)
    now = time.time()
    if kind == "checked":
        writes.add(counter.id, 1, 0, now, check=1)
    elif kind == "set":
        writes.set(counter.id, 5, 0, now)
    else:
        writes.add(counter.id, 1, 0, now)
    if kind == "two counters":
        writes.add(other.id, 1, 0, now)
    assert await store.delete_counter(counter.id)
    await writes.flush()
    await writes.stop()
    assert await store.read_buckets([counter.id]) == []
    if kind == "two counters":
        assert [b[2] for b in await store.read_buckets([other.id])] == [1]


async def test_read_during_commit_window_counts_once(
    store: Store, flaky: FlakyStore, counter: Counter
) -> None:
    """A read between a batch's commit and its completion neither misses nor doubles it."""
    writes = await started(flaky)
    flaky.hold = asyncio.Event()
    ticket = writes.add(counter.id, 5, 2, time.time())
    assert await read(store, writes) == (5, 2)  # pending, not committed
    await flaky.held.wait()  # committed in the database, the batch still in memory
    assert await read(store, writes) == (5, 2)
    writes.add(counter.id, 1, 0, time.time())  # fills the next batch meanwhile
    assert await read(store, writes) == (6, 2)
    flaky.hold.set()
    assert (await writes.wait(ticket)).up_count == 5
    await writes.stop()
    assert await read(store, writes) == (6, 2)


async def test_a_batch_committed_during_a_read_is_still_overlaid(
    store: Store, counter: Counter
) -> None:
    """A read whose snapshot was taken before a batch committed still adds that batch,
    even when the commit finished before the read came back (PostgreSQL reads are
    asynchronous): an acknowledged buffered write is never missing from a later read."""
    writes = await started(store, durability="buffered", flush_interval=60.0)
    writes.add(counter.id, 1, 0, time.time())  # acknowledged at once (buffered)
    epoch = writes.begin_read()
    counts = await store.read_counts(counter.id)  # the snapshot: before the commit
    assert counts is not None
    await writes.flush()  # committed, gone from the pending batches
    assert writes.overlay(counter.id, *counts)[:2] == (1, 0)
    writes.end_read(epoch)
    assert writes.retained == 0  # nothing kept once no read needs it
    epoch = writes.begin_read()
    counts = await store.read_counts(counter.id)  # a snapshot after the commit
    assert counts is not None
    assert writes.overlay(counter.id, *counts)[:2] == (1, 0)  # counted once
    writes.end_read(epoch)
    await writes.stop()


async def test_buffered_reads_include_pending_and_stop_flushes(
    store: Store, counter: Counter
) -> None:
    """Buffered: writes are visible at once, committed only at flush or stop."""
    writes = await started(store, durability="buffered", flush_interval=3600)
    for _ in range(10):
        writes.add(counter.id, 1, 0, time.time())
    assert await read(store, writes) == (10, 0)
    committed = await store.read_counter("ws", "c")
    assert committed is not None
    assert committed.up_count == 0
    history = await store.read_history(counter.id)
    assert sum(up for _, up, _ in writes.overlay_hours(counter.id, history.seq)) == 10
    await writes.stop()
    committed = await store.read_counter("ws", "c")
    assert committed is not None
    assert committed.up_count == 10
    assert writes.pending == 0


async def test_commit_failure_answers_503_and_counts_nothing(
    store: Store, flaky: FlakyStore, counter: Counter
) -> None:
    """Commit mode: a batch that fails twice is answered Unavailable and leaves no trace."""
    writes = await started(flaky)
    flaky.failures = 2
    with pytest.raises(Unavailable):
        await writes.wait(writes.add(counter.id, 1, 0, time.time()))
    assert await read(store, writes) == (0, 0)
    assert (await writes.wait(writes.add(counter.id, 1, 0, time.time()))).up_count == 1
    await writes.stop()


async def test_an_unexpected_error_does_not_stop_the_flusher(
    store: Store, flaky: FlakyStore, counter: Counter
) -> None:
    """A bug-like exception in a commit answers 503, and later writes still commit."""

    class Broken(FlakyStore):
        async def apply(self, changes: BatchChanges) -> dict[int, Totals]:
            self.applies += 1
            if self.applies == 1:
                raise RuntimeError("a bug")
            return await self.inner.apply(changes)

    writes = await started(Broken(store))
    with pytest.raises(Unavailable):
        await writes.wait(writes.add(counter.id, 1, 0, time.time()))
    assert (await writes.wait(writes.add(counter.id, 1, 0, time.time()))).up_count == 1
    await writes.stop()


async def test_commit_retries_a_failed_batch_once(
    store: Store, flaky: FlakyStore, counter: Counter
) -> None:
    """Commit mode: one failure (a dead pooled connection) is retried, unseen by clients."""
    writes = await started(flaky)
    flaky.failures = 1
    assert (await writes.wait(writes.add(counter.id, 1, 0, time.time()))).up_count == 1
    assert flaky.applies == 2
    await writes.stop()
    assert await read(store, writes) == (1, 0)


async def test_a_retried_commit_counts_once(store: Store, counter: Counter) -> None:
    """A batch whose COMMIT went through but whose answer was lost is not counted twice."""

    class LostAnswer(FlakyStore):
        async def apply(self, changes: BatchChanges) -> dict[int, Totals]:
            self.applies += 1
            result = await self.inner.apply(changes)
            if self.applies == 1:
                raise OutcomeUnknown("connection lost during COMMIT")
            return result

    writes = await started(LostAnswer(store))
    assert (await writes.wait(writes.add(counter.id, 3, 0, time.time()))).up_count == 3
    await writes.stop()
    assert await read(store, writes) == (3, 0)


async def test_a_lost_answer_that_did_not_commit_is_a_503_and_never_counts(
    store: Store, counter: Counter
) -> None:
    """A batch sent without an answer that in truth never committed: settle fences it,
    its request gets 503, and the same batch arriving late (a zombie) changes nothing."""
    sent: list[BatchChanges] = []

    class NeverArrived(FlakyStore):
        async def apply(self, changes: BatchChanges) -> dict[int, Totals]:
            self.applies += 1
            if self.applies == 1:
                sent.append(changes)
                raise OutcomeUnknown("no answer within 10 s")
            return await self.inner.apply(changes)

    writes = await started(NeverArrived(store))
    with pytest.raises(Unavailable):
        await writes.wait(writes.add(counter.id, 5, 0, time.time()))
    await store.apply(sent[0])  # the lost call reaches the database after all
    assert await read(store, writes) == (0, 0)
    assert (await writes.wait(writes.add(counter.id, 1, 0, time.time()))).up_count == 1
    await writes.stop()


async def test_an_unsettled_batch_waits_for_the_database_then_answers(
    store: Store, counter: Counter
) -> None:
    """While the database cannot tell whether a batch committed, its requests wait (no
    503 for a change that may count); once it can, they are answered truthfully."""

    class Unreachable(FlakyStore):
        settles = 0

        async def apply(self, changes: BatchChanges) -> dict[int, Totals]:
            self.applies += 1
            result = await self.inner.apply(changes)
            if self.applies == 1:
                raise OutcomeUnknown("connection lost")
            return result

        async def settle(self, changes: BatchChanges) -> dict[int, Totals] | None:
            self.settles += 1
            if self.settles <= 3:
                raise StorageError("connection refused")
            return await self.inner.settle(changes)

    flaky = Unreachable(store)
    writes = await started(flaky, retry_delay=0.01)
    totals = await writes.wait(writes.add(counter.id, 2, 0, time.time()))
    assert totals.up_count == 2
    assert flaky.settles == 4
    await writes.stop()
    assert await read(store, writes) == (2, 0)


@pytest.mark.parametrize("durability", ["commit", "buffered"])
async def test_a_change_after_stop_began_is_refused(
    store: Store, counter: Counter, durability: str
) -> None:
    """Once stop has begun, add and reset answer Unavailable and count nothing: a change
    made after the last drain would be acknowledged and lost."""
    writes = await started(store, durability=durability)
    writes.add(counter.id, 1, 0, time.time())
    stopping = asyncio.get_running_loop().create_task(writes.stop())
    await asyncio.sleep(0)
    with pytest.raises(Unavailable):
        writes.add(counter.id, 1, 0, time.time())
    with pytest.raises(Unavailable):
        writes.reset(counter.id, time.time())
    await stopping
    with pytest.raises(Unavailable):
        writes.add(counter.id, 1, 0, time.time())
    assert await read(store, writes) == (1, 0)


async def test_buffered_stop_ends_within_its_timeout_while_the_database_is_down(
    store: Store, flaky: FlakyStore, counter: Counter, caplog: pytest.LogCaptureFixture
) -> None:
    """Buffered: with the database down, stop gives up after stop_timeout (it used to
    retry forever) and logs how much was not committed."""
    writes = GroupCommit(
        cast(Store, flaky),
        durability="buffered",
        flush_interval=0.05,
        retry_delay=0.05,
        stop_timeout=0.5,
    )
    writes.start(0)
    flaky.failures = 10**9
    writes.add(counter.id, 3, 0, time.time())
    writes.add(counter.id, 0, 2, time.time())
    await asyncio.sleep(0.2)  # the flusher is in its retry loop
    started_at = time.monotonic()
    await asyncio.wait_for(writes.stop(), 5.0)
    assert time.monotonic() - started_at < 2.0
    assert "1 counter changes (5 events) not committed" in caplog.text


async def test_buffered_failure_is_retried_until_it_lands(
    store: Store, flaky: FlakyStore, counter: Counter
) -> None:
    """Buffered: an acknowledged change survives failed flushes and lands on retry."""
    writes = GroupCommit(
        cast(Store, flaky), durability="buffered", flush_interval=3600, retry_delay=0.01
    )
    writes.start(0)
    flaky.failures = 3
    writes.add(counter.id, 4, 0, time.time())
    await writes.flush()
    assert flaky.applies == 4
    await writes.stop()
    assert await read(store, writes) == (4, 0)


async def test_hours_are_bucketed_by_request_time(store: Store, counter: Counter) -> None:
    """Each change lands in the UTC hour of the moment it was accepted."""
    writes = await started(store)
    base = 1_750_000_000 // 3600 * 3600
    await writes.wait(writes.add(counter.id, 1, 0, base + 10))
    await writes.wait(writes.add(counter.id, 0, 1, base + 3600 + 10))
    await writes.stop()
    history = await store.read_history(counter.id)
    assert sorted(history.buckets) == [(base // 3600, 1, 0), (base // 3600 + 1, 0, 1)]


# A random walk over writes, resets, flushes and reads, checked against a plain model.

Op = tuple[str, int]
ops_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("up"), st.integers(1, 3)),
        st.tuples(st.just("down"), st.integers(1, 3)),
        st.tuples(st.just("reset"), st.just(0)),
        st.tuples(st.just("flush"), st.just(0)),
        st.tuples(st.just("tick"), st.just(0)),
    ),
    max_size=40,
)


async def _walk(path: Path, durability: str, ops: list[Op]) -> None:
    store = store_from_url(f"sqlite:///{path}", node="walk")
    await store.open()
    try:
        ws = await store.create_workspace("ws", "ws")
        c = await store.create_counter(ws.id, "c")
        writes = await started(store, durability=durability, flush_interval=3600)
        model = [0, 0]
        for op, n in ops:
            if op == "up":
                writes.add(c.id, n, 0, time.time())
                model[0] += n
            elif op == "down":
                writes.add(c.id, 0, n, time.time())
                model[1] += n
            elif op == "reset":
                writes.reset(c.id, time.time())
                model = [0, 0]
            elif op == "flush":
                await writes.flush()
            else:
                await asyncio.sleep(0)  # lets a commit-mode flush start or finish
            assert await read(store, writes) == tuple(model)
        await writes.stop()
        assert await read(store, writes) == tuple(model)
    finally:
        await store.close()


@pytest.mark.parametrize("durability", ["commit", "buffered"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy)
def test_reads_always_match_the_model(durability: str, ops: list[Op]) -> None:
    """Whatever the interleaving of writes and commits, a read shows exactly the model."""
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_walk(Path(tmp) / "walk.db", durability, ops))
