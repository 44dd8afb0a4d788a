"""Model-based testing of the write path: a Hypothesis state machine drives a real store
and a GroupCommit (up, down, by N, set, reset, delete, concurrent batches, crash and
reload) and checks every answer, every read, the totals and the hourly buckets against a
plain in-memory model. Both backends; bounded example counts for CI."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from conftest import with_query
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from psycopg import sql

from tally.models import Totals
from tally.storage import Store, store_from_url
from tally.writes import GroupCommit, Ticket

T = TypeVar("T")
BASE_HOUR = 490_000  # an hour index (mid-2025)
NAMES = st.sampled_from(["a", "b", "c"])
HOURS = st.integers(0, 2)


@dataclass
class Model:
    """One counter as it should be: totals and hourly buckets (hour -> [up, down])."""

    id: int
    up: int = 0
    down: int = 0
    buckets: dict[int, list[int]] = field(default_factory=dict)

    def copy(self) -> Model:
        return Model(self.id, self.up, self.down, {h: list(v) for h, v in self.buckets.items()})

    def bucket(self, hour: int) -> list[int]:
        return self.buckets.setdefault(BASE_HOUR + hour, [0, 0])

    def history(self) -> list[tuple[int, int, int]]:
        return sorted((h, u, d) for h, (u, d) in self.buckets.items() if (u, d) != (0, 0))


State = dict[str, Model]


class WritePath(RuleBasedStateMachine):
    """The store behind a GroupCommit (commit mode) of one node, against `State`."""

    url: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.incarnation = 0
        self.store, self.writes = self.run(self.boot())
        self.workspace_id = self.run(self.store.create_workspace("ws", "ws")).id
        self.model: State = {}
        # changes accepted, not yet answered: (ticket, name, the counter's totals after it);
        # and the model before the first of them and after each (a crash keeps a prefix)
        self.pending: list[tuple[Ticket, str, tuple[int, int]]] = []
        self.states: list[State] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def in_loop(self, call: Callable[[], T]) -> T:
        """Call a synchronous method that needs the running loop (GroupCommit.add)."""

        async def call_it() -> T:
            return call()

        return self.run(call_it())

    async def boot(self) -> tuple[Store, GroupCommit]:
        """Open the store as a new node (a new process), as `tally serve` does."""
        self.incarnation += 1
        store = store_from_url(self.url, node=f"model-{self.incarnation}")
        await store.open()
        await store.claim_node()
        writes = GroupCommit(store)
        writes.start(await store.register_node())
        return store, writes

    def teardown(self) -> None:
        try:
            self.run(self.writes.stop())
            self.run(self.store.close())
        finally:
            self.loop.close()

    # changes ------------------------------------------------------------------------

    def counter(self, name: str) -> Model:
        if name not in self.model:
            c = self.run(self.store.ensure_counter(self.workspace_id, name))
            assert (c.up_count, c.down_count) == (0, 0)
            self.model[name] = Model(c.id)
        return self.model[name]

    def mark(self) -> None:
        """Before a change: the model as it was before the first unanswered one."""
        if not self.states:
            self.states.append(self.snapshot())

    def snapshot(self) -> State:
        return {k: v.copy() for k, v in self.model.items()}

    def accept(self, ticket: Ticket, name: str) -> None:
        m = self.model[name]
        self.pending.append((ticket, name, (m.up, m.down)))
        self.states.append(self.snapshot())

    def change(self, name: str, up: int, down: int, hour: int) -> Ticket:
        m = self.counter(name)
        self.mark()
        ticket = self.in_loop(
            lambda: self.writes.add(m.id, up, down, (BASE_HOUR + hour) * 3600 + 7)
        )
        m.up += up
        m.down += down
        b = m.bucket(hour)
        b[0] += up
        b[1] += down
        self.accept(ticket, name)
        return ticket

    @rule(name=NAMES, n=st.integers(1, 5), hour=HOURS, down=st.booleans())
    def count_one(self, name: str, n: int, hour: int, down: bool) -> None:
        """One up or down (by n), answered before the next step."""
        self.change(name, 0 if down else n, n if down else 0, hour)
        self.answer_all()

    @rule(
        changes=st.lists(
            st.tuples(NAMES, st.integers(1, 5), st.integers(0, 5), HOURS), min_size=1, max_size=8
        )
    )
    def accept_concurrently(self, changes: list[tuple[str, int, int, int]]) -> None:
        """Several changes accepted at once (one or more batches), not answered yet."""
        for name, up, down, hour in changes:
            self.change(name, up, down, hour)

    @rule(name=NAMES, up=st.integers(0, 10**6), down=st.integers(0, 1000), hour=HOURS)
    def set_value(self, name: str, up: int, down: int, hour: int) -> None:
        m = self.counter(name)
        self.mark()
        ticket = self.in_loop(
            lambda: self.writes.set(m.id, up, down, (BASE_HOUR + hour) * 3600 + 7)
        )
        b = m.bucket(hour)
        b[0] += up - m.up
        b[1] += down - m.down
        m.up, m.down = up, down
        self.accept(ticket, name)

    @rule(name=NAMES)
    def reset(self, name: str) -> None:
        m = self.counter(name)
        self.mark()
        ticket = self.in_loop(lambda: self.writes.reset(m.id, BASE_HOUR * 3600))
        m.up = m.down = 0  # the history is kept
        self.accept(ticket, name)

    @rule()
    def answer_all(self) -> None:
        """Wait for every accepted change: each answer carries its own totals."""
        pending, self.pending, self.states = self.pending, [], []

        async def answers_of_all() -> list[Totals]:
            return await asyncio.gather(*(self.writes.wait(t) for t, _, _ in pending))

        answers = self.run(answers_of_all())
        for (_, name, expected), got in zip(pending, answers, strict=True):
            assert (got.up_count, got.down_count) == expected, name

    @precondition(lambda self: not self.pending and self.model)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.model)))
        assert self.run(self.store.delete_counter(self.model.pop(name).id))

    @rule()
    def crash_and_reload(self) -> None:
        """The process dies (nothing in memory survives, a commit under way may or may not
        land); a new one opens the same database. Answered changes all survive; of the
        unanswered ones, a prefix (whole batches, in order) does, never anything else."""
        for task in asyncio.all_tasks(self.loop):
            if task.get_name() == "tally-flusher":  # the group commit's, in mid-flight
                task.cancel()
        self.run(asyncio.sleep(0))
        self.run(self.store.close())
        self.store, self.writes = self.run(self.boot())
        candidates = self.states or [self.model]
        views = [self.view(state) for state in candidates]
        stored = self.stored()
        assert stored in views, (stored, views)
        kept = candidates[views.index(stored)]
        self.model = {
            name: kept[name].copy() if name in kept else Model(m.id)
            for name, m in self.model.items()
        }
        self.pending, self.states = [], []

    # checks -----------------------------------------------------------------------------

    def view(self, state: State) -> dict[str, tuple[int, int, list[tuple[int, int, int]]]]:
        """The state's totals and buckets of every counter the model knows (one made
        after the state, by a change since, is there and empty)."""
        out = {}
        for name in self.model:
            m = state.get(name)
            out[name] = (m.up, m.down, m.history()) if m else (0, 0, [])
        return out

    def stored(self) -> dict[str, tuple[int, int, list[tuple[int, int, int]]]]:
        """What the store holds now, for the counters the model knows."""
        out = {}
        for name, m in self.model.items():
            counts = self.run(self.store.read_counts(m.id))
            assert counts is not None, name
            history = self.run(self.store.read_history(m.id))
            buckets = sorted(b for b in history.buckets if b[1:] != (0, 0))
            out[name] = (counts[0], counts[1], buckets)
        return out

    @invariant()
    def reads_are_fresh(self) -> None:
        """A read (the store's snapshot plus this node's changes not in it) shows every
        accepted change, answered or not."""
        for name, m in self.model.items():
            epoch = self.writes.begin_read()
            try:
                counts = self.run(self.store.read_counts(m.id))
                assert counts is not None, name
                up, down, _ = self.writes.overlay(m.id, counts[0], counts[1], counts[2], counts[3])
            finally:
                self.writes.end_read(epoch)
            assert (up, down) == (m.up, m.down), name

    @precondition(lambda self: not self.pending)
    @invariant()
    def store_matches_the_model(self) -> None:
        """With everything answered, the store holds exactly the model's totals and
        hourly buckets."""
        assert self.stored() == self.view(self.model)


MakeUrl = Callable[[], str]


def check(url_for_example: MakeUrl, examples: int) -> None:
    class Machine(WritePath):
        def __init__(self) -> None:
            self.url = url_for_example()
            super().__init__()

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@pytest.mark.sqlite
def test_the_write_path_follows_the_model_on_sqlite(tmp_path: Path) -> None:
    """SQLite: every answer, read, total and hourly bucket as the model says."""
    made = iter(range(10**6))
    check(lambda: f"sqlite:///{tmp_path / f'model-{next(made)}.db'}", examples=40)


@pytest.mark.postgres
def test_the_write_path_follows_the_model_on_postgresql(postgres_base_url: str) -> None:
    """PostgreSQL: the same, each example in a schema of its own."""
    schemas: list[str] = []

    def url() -> str:
        schemas.append(f"tally_model_{secrets.token_hex(6)}")
        return with_query(postgres_base_url, schema=schemas[-1])

    try:
        check(url, examples=12)
    finally:
        with psycopg.connect(postgres_base_url, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
