"""The write path: deltas gathered into batches, one transaction per batch (group commit).

Every up / down / reset lands in the *open* batch of this node. One flusher task takes
batches in order and hands each to `Store.apply`, which commits it as one transaction
and records the batch's `seq` for this node in the same transaction.

- ``durability="commit"``: the flusher runs whenever there is work; a request awaits the
  commit of its batch before it is answered. Requests arriving while a batch commits
  fill the next one, so many requests share one transaction (and one fsync).
- ``durability="buffered"``: requests are answered at once; the flusher commits every
  `flush_interval` seconds and retries a failed batch until it lands.

Reads stay fresh in both modes: a read's snapshot carries the `seq` of the last batch
of this node it contains, and `overlay` adds the changes of every later batch that is
still in memory, including batches that committed while the read was in flight (kept
until the reads begun before their commit are done: `begin_read` / `end_read`). So a
reader never misses nor double-counts a change, however the commit and the read
interleave, also where reads are asynchronous (PostgreSQL).

The flush cost grows with the number of counters a batch changed, never with the
number of counters in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tally.errors import NotFound, OutcomeUnknown, StorageError, Unavailable
from tally.histogram import LATENCY_BOUNDS, SIZE_BOUNDS, Histogram
from tally.models import UNCHECKED, BatchChanges, CounterDelta, Totals
from tally.storage.base import Store

log = logging.getLogger("tally.writes")

# a committed batch that carried this many requests means the server is busy
LINGER_AFTER = 4


class Batch:
    """An open or committing batch, the future that tells when it is done, and a future
    for each request waiting for it (its own, so a request that goes away cancels only
    that one; cheaper than shielding the shared future for every request)."""

    __slots__ = ("changes", "done", "waiters")

    def __init__(self, seq: int) -> None:
        self.changes = BatchChanges(seq=seq, counters={}, hours={})
        self.done: asyncio.Future[dict[int, Totals]] = asyncio.get_running_loop().create_future()
        self.waiters: list[asyncio.Future[dict[int, Totals]]] = []

    def succeed(self, results: dict[int, Totals]) -> None:
        """Committed: hand every waiter the counters' totals after the commit. The batch
        may still be overlaid for reads in flight (see begin_read), so a refused (checked)
        change is taken out of it, and a set's history adjustment put in."""
        changes = self.changes
        for counter_id, totals in results.items():
            if totals.refused:
                changes.counters[counter_id] = CounterDelta(updated_at=0.0)
                for key in [k for k in changes.hours if k[0] == counter_id]:
                    del changes.hours[key]
            elif totals.replaced is not None:  # a set: its history adjustment, now known
                delta = changes.counters[counter_id]
                hour = changes.hours.setdefault((counter_id, delta.record), [0, 0])
                hour[0] += delta.base_up - totals.replaced[0]
                hour[1] += delta.base_down - totals.replaced[1]
        self.done.set_result(results)
        for waiter in self.waiters:
            if not waiter.done():  # done: its request was cancelled
                waiter.set_result(results)

    def fail(self, exc: BaseException) -> None:
        """Not committed: every waiter gets `exc`."""
        self.done.set_exception(exc)
        self.done.exception()  # retrieved: its waiters may all be gone
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(exc)


@dataclass(slots=True)  # one per request: not frozen, whose __init__ is 4x slower
class Ticket:
    """One request's change: which batch holds it, and the counter's totals within that
    batch right after it, so the request can be answered with exactly its own value."""

    batch: Batch
    counter_id: int
    up: int
    down: int


class GroupCommit:
    def __init__(
        self,
        store: Store,
        *,
        durability: str = "commit",
        flush_interval: float = 1.0,
        retry_delay: float = 0.5,
        stop_timeout: float = 30.0,
        linger: float = 0.0,
    ) -> None:
        if durability not in ("commit", "buffered"):
            raise ValueError("durability must be commit or buffered")
        self.store = store
        self.durability = durability
        self.flush_interval = flush_interval
        self.retry_delay = retry_delay
        self.stop_timeout = stop_timeout
        self.linger = linger
        self._sealed: deque[Batch] = deque()  # oldest first; the first one may be committing
        # Committed batches kept for reads in flight: a read whose snapshot predates a
        # commit must still add that batch, even if the commit finished first. Each
        # commit bumps the epoch; a batch stays while a read begun before it is open.
        self._committed: deque[tuple[int, Batch]] = deque()
        self._epoch = 0
        self._readers: dict[int, int] = {}  # epoch a read began at -> reads open
        self._open: Batch | None = None
        self._seq = 0
        self._wake = asyncio.Event()  # commit mode: there is work
        self._flush_now = asyncio.Event()  # buffered mode: do not wait for the interval
        self._stop = asyncio.Event()
        self._deadline: float | None = None  # set when stop begins: one bound for all of it
        self._task: asyncio.Task[None] | None = None
        # each is called with each committed batch, in the flusher (keep them cheap)
        self.on_commit: list[Callable[[BatchChanges], None]] = []
        self.batches_committed = 0
        self.changes_committed = 0
        self.batches_failed = 0
        self.commit_seconds = Histogram(LATENCY_BOUNDS)  # Store.apply, committed or not
        self.batch_changes = Histogram(SIZE_BOUNDS)  # counters changed per committed batch
        self.batch_requests = Histogram(SIZE_BOUNDS)  # requests waiting for it (commit mode)

    # lifecycle ----------------------------------------------------------------

    def start(self, last_seq: int = 0) -> None:
        """Start the flusher; `last_seq` is the last seq this node already committed."""
        self._seq = last_seq
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tally-flusher")

    async def stop(self) -> None:
        """Refuse new changes, commit everything still in memory, then stop the flusher;
        all within `stop_timeout` seconds. What could not be committed by then (the
        database is down) is logged with its size."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.stop_timeout
        self._stop.set()
        self._wake.set()
        self._flush_now.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def flush(self) -> None:
        """Wait until everything in memory now has been committed (or failed)."""
        batch = self._open or (self._sealed[-1] if self._sealed else None)
        if batch is None:
            return
        self._wake.set()
        self._flush_now.set()
        with contextlib.suppress(StorageError):
            await asyncio.shield(batch.done)

    def begin_read(self) -> int:
        """Call before reading the store for an overlay, and `end_read` with the result
        once the overlay is done: committed batches the read's snapshot may predate
        stay overlaid until then."""
        epoch = self._epoch
        self._readers[epoch] = self._readers.get(epoch, 0) + 1
        return epoch

    def end_read(self, epoch: int) -> None:
        left = self._readers[epoch] - 1
        if left:
            self._readers[epoch] = left
        else:
            del self._readers[epoch]
        if self._committed:
            oldest = min(self._readers, default=self._epoch)
            while self._committed and self._committed[0][0] <= oldest:
                self._committed.popleft()

    @property
    def retained(self) -> int:
        """Committed batches still kept for reads in flight."""
        return len(self._committed)

    @property
    def pending(self) -> int:
        """Counter changes in memory, not yet committed."""
        batches = [*self._sealed, *([self._open] if self._open else [])]
        return sum(len(b.changes.counters) for b in batches)

    # the write side -------------------------------------------------------------

    def _new_batch(self) -> Batch:
        if self._open is not None:
            self._sealed.append(self._open)
        self._seq += 1
        self._open = batch = Batch(self._seq)
        self._wake.set()
        return batch

    def _refuse_when_stopping(self) -> None:
        # a change added after the last batch was drained would be acknowledged and lost
        if self._deadline is not None:
            raise Unavailable("the server is stopping; nothing was counted, try again")

    def add(
        self, counter_id: int, up: int, down: int, now: float, check: int = UNCHECKED
    ) -> Ticket:
        """Add up/down events to a counter at time `now` (unix seconds). Unavailable once
        stop has begun. A checked change (`check`, see CounterDelta) is alone for its
        counter in its batch, so the store can accept or refuse it by itself: it starts
        a new batch if the open one already changes the counter, and so does any change
        after it."""
        if self._deadline is not None:
            self._refuse_when_stopping()
        batch = self._open or self._new_batch()
        changes = batch.changes
        delta = changes.counters.get(counter_id)
        if delta is not None and (check or delta.check):
            batch = self._new_batch()
            changes = batch.changes
            delta = None
        if delta is None:
            delta = changes.counters[counter_id] = CounterDelta(check=check)
        delta.up += up
        delta.down += down
        if now > delta.updated_at:
            delta.updated_at = now
        key = (counter_id, int(now // 3600))
        hour = changes.hours.get(key)
        if hour is None:
            changes.hours[key] = [up, down]
        else:
            hour[0] += up
            hour[1] += down
        return Ticket(batch, counter_id, delta.up, delta.down)

    def reset(self, counter_id: int, now: float) -> Ticket:
        """Set both totals of a counter back to zero (its history is kept)."""
        return self._replace(counter_id, CounterDelta(0, 0, True, now))

    def set(
        self, counter_id: int, up: int, down: int, now: float, check: int = UNCHECKED
    ) -> Ticket:
        """Set a counter's totals to `up` and `down`. Changes this node accepted before it
        are replaced, later ones add to it; the store records the difference to the
        replaced totals in the hour's bucket (see CounterDelta.record)."""
        hour = int(now // 3600)
        ticket = self._replace(
            counter_id, CounterDelta(0, 0, True, now, up, down, check=check, record=hour)
        )
        ticket.batch.changes.hours.setdefault((counter_id, hour), [0, 0])  # locked in order
        return ticket

    def _replace(self, counter_id: int, delta: CounterDelta) -> Ticket:
        self._refuse_when_stopping()
        batch = self._open
        if batch is None or counter_id in batch.changes.counters:
            # Tickets already handed out for this counter are relative to the delta so
            # far: the reset starts a fresh batch, committed after this one.
            batch = self._new_batch()
        batch.changes.counters[counter_id] = delta
        return Ticket(batch, counter_id, 0, 0)

    def commit_soon(self) -> None:
        """Buffered mode: a request waits for its commit (a checked change, a set), so
        do not wait for the interval."""
        self._flush_now.set()

    async def wait(self, ticket: Ticket) -> Totals:
        """Wait for the ticket's batch to commit; the counter's totals as of this request."""
        batch = ticket.batch
        try:
            if batch.done.done():
                results = batch.done.result()
            else:
                waiter = batch.done.get_loop().create_future()
                batch.waiters.append(waiter)
                results = await waiter
        except StorageError as exc:
            raise Unavailable() from exc
        final = results.get(ticket.counter_id)
        if final is None:  # the counter was deleted meanwhile: nothing was counted
            raise CounterGone()
        if final.refused:  # the totals as committed, without this change
            return final
        delta = ticket.batch.changes.counters[ticket.counter_id]
        return Totals(
            final.up_count - delta.up + ticket.up,
            final.down_count - delta.down + ticket.down,
            final.updated_at,
        )

    # the read side ----------------------------------------------------------------

    def _batches_after(self, seq: int) -> list[Batch]:
        batches = [b for _, b in self._committed if b.changes.seq > seq]
        batches += [b for b in self._sealed if b.changes.seq > seq]
        if self._open is not None and self._open.changes.seq > seq:
            batches.append(self._open)
        return batches

    def overlay(
        self, counter_id: int, up: int, down: int, updated: float, seq: int
    ) -> tuple[int, int, float]:
        """A counter's totals read in a snapshot at `seq`, plus every change of this node
        that the snapshot does not contain."""
        if self._open is None and not self._sealed and not self._committed:
            return up, down, updated
        for batch in self._batches_after(seq):
            delta = batch.changes.counters.get(counter_id)
            if delta is None or (delta.check and not batch.done.done()):
                continue  # a checked change counts once the store accepted it
            up, down = delta.totals_after(up, down)
            if delta.updated_at > updated:
                updated = delta.updated_at
        return up, down, updated

    def overlay_hours(self, counter_id: int, since_seq: int) -> list[tuple[int, int, int]]:
        """Hourly events of this node not in a snapshot taken at `since_seq`."""
        out = []
        for batch in self._batches_after(since_seq):
            delta = batch.changes.counters.get(counter_id)
            if delta is None or (delta.check and not batch.done.done()):
                continue
            out += [
                (h, ud[0], ud[1])
                for (cid, h), ud in batch.changes.hours.items()
                if cid == counter_id
            ]
        return out

    # the flusher ------------------------------------------------------------------

    async def _run(self) -> None:
        buffered = self.durability == "buffered"
        while not self._stop.is_set():
            if buffered:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_now.wait(), self.flush_interval)
                self._flush_now.clear()
            else:
                await self._wake.wait()
            self._wake.clear()
            # commit mode keeps taking the batch that filled up while one committed;
            # buffered mode takes what is there now and waits an interval for the rest
            await self._drain(keep_sealing=not buffered)
        await self._drain(keep_sealing=True)
        if self.pending:
            batches = [*self._sealed, *([self._open] if self._open else [])]
            events = sum(d.up + d.down for b in batches for d in b.changes.counters.values())
            log.error(
                "stopped after %g s with %d counter changes (%d events) not committed: "
                "the database did not take them",
                self.stop_timeout,
                self.pending,
                events,
            )

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline

    async def _pause(self) -> None:
        """Wait `retry_delay` before trying the database again; less when stopping."""
        delay = self.retry_delay
        if self._deadline is not None:
            delay = max(0.0, min(delay, self._deadline - time.monotonic()))
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)

    async def _drain(self, *, keep_sealing: bool) -> None:
        if self._open is not None:
            self._sealed.append(self._open)
            self._open = None
        while self._sealed:
            batch = self._sealed[0]
            busy = len(batch.waiters) >= LINGER_AFTER
            try:
                committed = await self._commit(batch)
            except _Unsettled:
                return  # stop's deadline passed with the batch's outcome unknown
            if committed:
                self._sealed.popleft()
            elif self.durability == "commit":
                self._sealed.popleft()  # its requests were answered 503: nothing was counted
            elif self._past_deadline():
                return
            else:
                await self._pause()
            if not self._sealed and keep_sealing and self._open is not None:
                if busy and self.linger:
                    # busy: let the next batch fill a moment longer, so the same requests
                    # take fewer transactions (see TALLY_COMMIT_LINGER)
                    await asyncio.sleep(self.linger)
                self._sealed.append(self._open)
                self._open = None

    async def _apply(self, changes: BatchChanges) -> dict[int, Totals]:
        """Store.apply, tried twice when the first try surely did not commit (a pooled
        connection that died with its server fails once). An unknown outcome is settled
        in commit mode; buffered mode tries again later, which is safe: apply is
        idempotent per seq."""
        try:
            return await self.store.apply(changes)
        except OutcomeUnknown:
            if self.durability == "buffered":
                raise
            return await self._settle(changes)
        except StorageError as exc:
            log.info("batch %d failed, retrying once: %s", changes.seq, exc)
        try:
            return await self.store.apply(changes)
        except OutcomeUnknown:
            if self.durability == "buffered":
                raise
            return await self._settle(changes)

    async def _settle(self, changes: BatchChanges) -> dict[int, Totals]:
        """Commit mode, after a batch was sent and no answer came: find out whether it
        committed before answering anyone, trying until the database can tell (or stop's
        deadline passes). Its requests get 503 only if it never will commit."""
        while True:
            try:
                results = await self.store.settle(changes)
            except StorageError as exc:
                if self._past_deadline():
                    log.error(
                        "batch %d (%d requests) is left unanswered: whether it committed "
                        "is unknown (%s)",
                        changes.seq,
                        len(changes.counters),
                        exc,
                    )
                    raise _Unsettled() from exc
                log.warning("batch %d: outcome unknown, asking again: %s", changes.seq, exc)
                await self._pause()
                continue
            if results is None:
                raise StorageError(f"batch {changes.seq} did not commit")
            log.info("batch %d: its answer was lost, but it committed", changes.seq)
            return results

    async def _commit(self, batch: Batch) -> bool:
        changes = batch.changes
        started = time.perf_counter()
        try:
            results = await self._apply(changes)
        except _Unsettled:
            raise
        except Exception as exc:
            self.commit_seconds.observe(time.perf_counter() - started)
            # Not only StorageError: whatever goes wrong, the flusher must live on, or
            # every later write would wait forever.
            if not isinstance(exc, StorageError):
                log.exception("batch %d failed unexpectedly", changes.seq)
                exc = StorageError(f"unexpected: {exc!r}")
            self.batches_failed += 1
            if self.durability == "commit":
                log.warning("batch %d failed; its requests get 503: %s", changes.seq, exc)
                batch.fail(exc)
            else:
                log.warning("batch %d failed, will retry: %s", changes.seq, exc)
            return False
        self.commit_seconds.observe(time.perf_counter() - started)
        self.batches_committed += 1
        self.changes_committed += len(changes.counters)
        self.batch_changes.observe(len(changes.counters))
        self.batch_requests.observe(len(batch.waiters))
        self._epoch += 1
        if self._readers:
            self._committed.append((self._epoch, batch))
        batch.succeed(results)
        for listener in self.on_commit:
            try:
                listener(changes)
            except Exception:  # a listener's bug must not stop the flusher
                log.exception("on_commit listener %r failed", listener)
        return True


class CounterGone(NotFound):
    """The counter was deleted (on this node or another) between the request's lookup and
    its batch's commit: the change counted nothing, and the counter does not exist."""


class _Unsettled(Exception):
    """Stop's deadline passed while a batch's outcome was still unknown."""
