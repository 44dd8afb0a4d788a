"""How many nodes serve the database now, from their heartbeats in it.

Every `interval` seconds a node marks its own row of the database alive and counts the
nodes marked alive within `live_within` seconds (`Store.heartbeat`: one short
statement). The rate limit reads the count while Redis is away, when each node admits
its share of the limit (tally.storage.redis_limiter), so the count must come from the
database, never from Redis; and a request only reads the last count, it never asks.

A node that stops or dies is still counted for up to `live_within` seconds (the others
admit less meanwhile, never more); a node that starts is counted by the others at their
next beat, within `interval` seconds. The nodes' clocks are taken to agree within a few
seconds (NTP), as for the rest of what they record in the database. While the database
does not answer, the last count stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tally.errors import StorageError
from tally.storage import Store

log = logging.getLogger("tally.nodes")

HEARTBEAT_SECONDS = 10.0
LIVE_SECONDS = 30.0  # two beats may be missed before a node stops counting


class LiveNodes:
    """The number of live nodes (at least 1, this one), refreshed in the background."""

    def __init__(
        self,
        store: Store,
        interval: float = HEARTBEAT_SECONDS,
        live_within: float = LIVE_SECONDS,
    ) -> None:
        self.store = store
        self.interval = interval
        self.live_within = live_within
        self.count = 1
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> int:
        """Beat and count once; StorageError if the database does not answer."""
        self.count = max(1, await self.store.heartbeat(self.live_within))
        return self.count

    def start(self) -> None:
        """Beat every `interval` seconds until `close`."""
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except StorageError as exc:
                if not failing:
                    log.warning("heartbeat failed (%s): %d live nodes assumed", exc, self.count)
                failing = True
            else:
                failing = False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
