"""V1 namespaces: the domain side of the retired open-source CounterAPI V1 (tally.web.v1).

A namespace is a workspace opened for V1 (`Workspace.v1_open`, off by default). V1 has
no tokens: anyone may read, up, down and set the *public* counters of an open namespace,
and up / down / set create a missing one, as V1 did; private counters do not exist for
it. A down never takes the value below 0 (a checked change, exact under concurrency);
bounds and allowed origins apply as in V2. Everything goes through `Counters` and its
group commit.
"""

from __future__ import annotations

import time

from tally import origins
from tally.counters import MAX_SET, Counters, CounterView, bound_error
from tally.errors import BadRequest, NotFound
from tally.models import CHECK_BOUNDS, CHECK_BOUNDS_AND_ZERO, UNCHECKED, Counter, History, Workspace


class RecordNotFound(BadRequest):
    """V1's answer for a counter that is not there (400, "record not found")."""

    default_message = "record not found"


class Namespaces:
    def __init__(self, counters: Counters, cache_ttl: float = 1.0) -> None:
        self.counters = counters
        self.cache_ttl = cache_ttl

    async def workspace(self, slug: str) -> Workspace | None:
        """The workspace (its settings trusted for the cache TTL, as counters' are)."""
        return await self.counters.workspace(slug)

    def forget(self, slug: str) -> None:
        """Drop what this node remembers of the workspace (after a change of its settings
        here; other nodes see it within the cache TTL)."""
        self.counters.forget_workspace(slug)

    async def _counter(self, namespace: str, name: str, create: bool, client: str = "") -> Counter:
        """A public counter of a V1 namespace (NotFound: no such namespace open for V1;
        RecordNotFound: no such public counter, and `create` is false). A new one spends
        one of `client`'s (its IP's) new counters (Counters.may_create)."""
        counter = await self.counters.find(namespace, name)
        if counter is not None:
            if not counter.v1_open:
                raise NotFound("no V1 namespace of that name")
            if counter.private:
                raise RecordNotFound()
            return counter
        ws = await self.workspace(namespace)
        if ws is None or not ws.v1_open:
            raise NotFound("no V1 namespace of that name")
        if not create:
            raise RecordNotFound()
        await self.counters.may_create(client)
        counter = await self.counters.create(namespace, ws.id, name)
        if counter.private:  # made private by someone else in the meantime
            raise RecordNotFound()
        return counter

    async def get(self, namespace: str, name: str) -> CounterView:
        return await self.counters.current(await self._counter(namespace, name, create=False))

    async def count(
        self, namespace: str, name: str, up: int, source: origins.Source, client: str = ""
    ) -> CounterView:
        """V1 up (`up` 1) or down (`up` 0): never below 0; a refused down answers the
        counter as it is."""
        counter = await self._counter(namespace, name, create=True, client=client)
        self.counters.check_origin(counter, source)
        down = 1 - up
        check = CHECK_BOUNDS_AND_ZERO if down else CHECK_BOUNDS if counter.bounded else UNCHECKED
        if check or self.counters.commit:
            totals = await self.counters.committed(
                self.counters.writes.add(counter.id, up, down, time.time(), check), counter
            )
            if totals.refused and up:
                raise bound_error(counter, up, down)
            return CounterView(counter, totals.up_count, totals.down_count, totals.updated_at)
        return await self.counters.buffered(
            counter, lambda: self.counters.writes.add(counter.id, up, 0, time.time())
        )

    async def set(
        self, namespace: str, name: str, count: int, source: origins.Source, client: str = ""
    ) -> CounterView:
        if not 0 <= count <= MAX_SET:
            raise BadRequest(f"count must be a whole number from 0 to {MAX_SET}")
        counter = await self._counter(namespace, name, create=True, client=client)
        self.counters.check_origin(counter, source)
        return await self.counters.set_totals(counter, count, 0)

    async def history(self, namespace: str, name: str) -> tuple[CounterView, History]:
        """The counter and all its hourly buckets, pending ones included."""
        view = await self.get(namespace, name)
        epoch = self.counters.writes.begin_read()
        try:
            history = await self.counters.store.read_history(view.counter.id)
            buckets = history.buckets + self.counters.writes.overlay_hours(
                view.counter.id, history.seq
            )
        finally:
            self.counters.writes.end_read(epoch)
        return view, History(buckets, history.seq)
