"""Counter changes between nodes over Redis pub/sub, for the live streams (tally/live.py).

Channel ``{prefix}changes``: after each commit a node publishes
``{"node": "<its bus id>", "ids": [<counter ids>]}``; every node subscribes and wakes the
streams of those counters (its own messages skipped). Nothing is stored in Redis.

Publishing runs in a task of its own: the flusher only adds ids to a set. A Redis that
fails or goes silent (a health check every 5 s, 5 s to answer) marks the feed not
`remote`, so streams fall back to periodic reads; the subscriber reconnects every
second by itself. Counting never waits for any of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from tally.live import ChangeFeed

log = logging.getLogger("tally.live")

MAX_PENDING = 100_000  # ids queued for publishing at most; beyond, streams poll anyway
RETRY = 1.0  # seconds between attempts to subscribe again
WAIT = 0.25  # seconds a subscriber's read waits for a message (and then looks at close)
CLOSE_WITHIN = 2.0


class RedisBus:
    def __init__(self, url: str, prefix: str) -> None:
        self.client = aioredis.Redis.from_url(
            url, socket_connect_timeout=1.0, socket_timeout=5.0, health_check_interval=5
        )
        self.channel = f"{prefix}changes"
        self.node = uuid.uuid4().hex
        self._pending: set[int] = set()
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._subscribed = False
        self.published = 0
        self.received = 0
        self.failures = 0

    def publish(self, ids: Iterable[int]) -> None:
        if len(self._pending) < MAX_PENDING:
            self._pending.update(ids)
            self._ready.set()

    def start(self, feed: ChangeFeed) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._publisher(feed), name="tally-feed-publish"),
            loop.create_task(self._subscriber(feed), name="tally-feed-subscribe"),
        ]

    async def close(self) -> None:
        """Stop both tasks and disconnect, within about CLOSE_WITHIN seconds. Neither task
        is cancelled inside a Redis call if it can be helped: redis-py can swallow a
        cancellation that lands in a command (the call then returns normally), and a
        cancelled read can leave its connection waiting on itself. So both are asked to
        stop: the publisher is woken to see `_closing`, the subscriber's read is woken by
        a message of this node's own on the channel (every node skips those)."""
        self._closing = True
        self._ready.set()
        tasks, self._tasks = self._tasks, []
        if tasks:
            if self._subscribed:
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    async with asyncio.timeout(WAIT):
                        await self.client.publish(self.channel, self._own_message([]))
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_WITHIN)
            for task in stuck:  # still in a call past the bound: leave it
                task.cancel()
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(CLOSE_WITHIN):
                await self.client.aclose()

    def _own_message(self, ids: list[int]) -> bytes:
        return orjson.dumps({"node": self.node, "ids": ids})

    async def _publisher(self, feed: ChangeFeed) -> None:
        while True:
            await self._ready.wait()
            if self._closing:
                return
            self._ready.clear()
            ids, self._pending = self._pending, set()
            message = self._own_message(sorted(ids))
            try:
                await self.client.publish(self.channel, message)
                self.published += 1
            except (RedisError, OSError) as exc:
                # other nodes miss these: they are polling by now, their subscriber
                # having lost the same Redis
                self.failures += 1
                if feed.remote:
                    log.warning("publishing changes to Redis failed: %s", exc)

    async def _subscriber(self, feed: ChangeFeed) -> None:
        while not self._closing:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed = True
                if not feed.remote:
                    log.info("live streams: hearing other nodes through Redis")
                feed.set_remote(True)
                while not self._closing:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=WAIT)
                    if message is not None and message["type"] == "message":
                        self._deliver(feed, message["data"])
            except (RedisError, OSError) as exc:
                self.failures += 1
                if feed.remote:
                    log.warning("live streams: Redis lost (%s); streams read every few s", exc)
                feed.set_remote(False)
            finally:
                self._subscribed = False
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            for _ in range(int(RETRY / WAIT)):
                if self._closing:
                    return
                await asyncio.sleep(WAIT)

    def _deliver(self, feed: ChangeFeed, data: bytes) -> None:
        try:
            body = orjson.loads(data)
            node, ids = body["node"], body["ids"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return  # not ours
        if node != self.node and isinstance(ids, list) and ids:  # []: a node closing
            self.received += 1
            feed.changed(i for i in ids if isinstance(i, int))
