"""Which counters changed, for the live streams: this node's commits, and other nodes'.

`ChangeFeed` keeps, per counter, the wake-up events of the streams watching it. This
node's group commit tells it each committed batch (`on_commit`); a `Bus` (Redis pub/sub
in scale-out, tally/storage/redis_feed.py) carries the changed ids to every other node
and brings theirs. Nothing here is on the counting path: `on_commit` only sets events
and queues ids for the bus.

When other nodes' changes cannot arrive (the bus is down, or a shared database without
a bus), `remote` is False and streams read their counter every `POLL_INTERVAL` seconds
instead: slower, never wrong, and counting is not affected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from tally.models import BatchChanges

POLL_INTERVAL = 2.0  # seconds between reads of a stream while other nodes are not heard


class Bus(Protocol):
    """Carries changed counter ids between the nodes."""

    def publish(self, ids: Iterable[int]) -> None:
        """Queue ids this node committed (never blocks, never raises)."""

    def start(self, feed: ChangeFeed) -> None:
        """Begin delivering other nodes' ids to `feed.changed`, and `feed.set_remote`."""

    async def close(self) -> None: ...


class ChangeFeed:
    def __init__(self, bus: Bus | None, *, shared_store: bool) -> None:
        self.bus = bus
        # other nodes' changes arrive: a store of this node alone has none to hear
        self.remote = bus is None and not shared_store
        self._watchers: dict[int, set[asyncio.Event]] = {}
        self._polling: set[asyncio.Event] = set()  # every watcher: woken when `remote` changes

    def start(self) -> None:
        if self.bus is not None:
            self.bus.start(self)

    async def close(self) -> None:
        if self.bus is not None:
            await self.bus.close()

    def watch(self, counter_id: int, wake: asyncio.Event) -> None:
        self._watchers.setdefault(counter_id, set()).add(wake)
        self._polling.add(wake)

    def unwatch(self, counter_id: int, wake: asyncio.Event) -> None:
        watchers = self._watchers.get(counter_id)
        if watchers is not None:
            watchers.discard(wake)
            if not watchers:
                del self._watchers[counter_id]
        self._polling.discard(wake)
        if not self._polling:  # sets and dicts keep their largest size: give it back
            self._polling = set()
            self._watchers = {}

    def watching(self, counter_id: int) -> bool:
        return counter_id in self._watchers

    @property
    def watched(self) -> int:
        """Counters with at least one stream."""
        return len(self._watchers)

    def changed(self, ids: Iterable[int]) -> None:
        """Wake the streams of these counters."""
        watchers = self._watchers
        for counter_id in ids:
            for wake in watchers.get(counter_id, ()):
                wake.set()

    def on_commit(self, changes: BatchChanges) -> None:
        """GroupCommit listener: this node committed a batch."""
        self.changed(changes.counters)
        if self.bus is not None:
            self.bus.publish(changes.counters)

    def set_remote(self, remote: bool) -> None:
        """The bus is (not) delivering other nodes' changes. Either way every stream
        reads once: changes may have been missed while it was down."""
        if remote != self.remote:
            self.remote = remote
            for wake in self._polling:
                wake.set()
