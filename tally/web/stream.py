"""GET /v2/{workspace}/{name}/stream: the counter as Server-Sent Events.

Read top to bottom in `Streams.__call__`: authenticate, limit, read (the rules of get),
admit (open streams per client key and per node), then serve: the current value at
once (also to a client resuming with Last-Event-ID), then the value after every change,
at most one event per `min_gap` seconds (changes in between are coalesced into the next
event), and every `heartbeat` seconds (TALLY_STREAM_HEARTBEAT) on a quiet stream a read
of the counter: its access checked again (`check`) and its value sent if it changed
unseen, else a comment line so proxies keep the connection.

Each stream is one request plus one task waiting for the client's disconnect. Both end
when the client goes, when the server stops (`stop`), so a stream never holds the
shutdown, and when the access ends: the counter deleted (or deleted and created again
under its name: a stream follows one counter), made private, the token revoked or
expired, the session signed out. The access is checked before every read, so at the
latest at the next heartbeat, and the stream then ends with an `end` event saying why
(`END_REASONS`, docs/api.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

import orjson

from tally.counters import CounterView
from tally.errors import (
    Forbidden,
    NotFound,
    RateLimited,
    StorageError,
    TallyError,
    Unauthorized,
    Unavailable,
)
from tally.live import POLL_INTERVAL, ChangeFeed
from tally.models import Counter
from tally.web.api import Route, V2Api
from tally.web.http import (
    Headers,
    Message,
    Receive,
    Scope,
    Send,
    client_key,
    header,
    response_start,
)

log = logging.getLogger("tally.web")

HEARTBEAT = 15.0  # seconds between access checks (and comment lines) on a quiet stream
MIN_GAP = 0.1  # seconds between two events of one stream: at most 10 a second
RETRY_MS = 2000  # what EventSource waits before reconnecting
STREAM_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
    (b"access-control-allow-origin", b"*"),
]


# The stream's counter, its access checked again before each read (TallyError: it ended);
# the argument is True at a heartbeat: then nothing the check may cache is trusted
Check = Callable[[bool], Awaitable[Counter]]


class Replaced(NotFound):
    """The stream's counter was deleted and another one created under its name."""

    def __init__(self) -> None:
        super().__init__(
            "the counter was deleted and created again: connect again to follow the new one"
        )


class Stopping(Unavailable):
    """The server is stopping."""

    def __init__(self) -> None:
        super().__init__("the server is stopping: connect again")


# the `reason` of the `end` event that ends a stream, by what ended it (docs/api.md)
END_REASONS: tuple[tuple[type[TallyError], str], ...] = (
    (Replaced, "replaced"),  # before NotFound, its base
    (Stopping, "stopping"),  # before Unavailable
    (Unauthorized, "unauthorized"),  # token revoked or expired, session signed out
    (Forbidden, "forbidden"),  # the token or member may no longer read it
    (NotFound, "not_found"),  # deleted, or made private to a caller outside its workspace
    (Unavailable, "unavailable"),  # the database did not answer
)


def end_event(exc: TallyError) -> bytes:
    """The `end` event of a stream ended by `exc`: the error's JSON shape and a reason."""
    reason = next((r for kind, r in END_REASONS if isinstance(exc, kind)), "error")
    body = {"code": str(exc.status), "message": exc.message, "reason": reason}
    return b"event: end\ndata: " + orjson.dumps(body) + b"\n\n"


class Streams:
    def __init__(
        self,
        api: V2Api,
        feed: ChangeFeed,
        per_client: int,
        per_node: int,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self.api = api
        self.feed = feed
        self.per_client = per_client
        self.per_node = per_node
        self.heartbeat = heartbeat
        self.min_gap = MIN_GAP
        self.poll_interval = POLL_INTERVAL
        self.open = 0
        self.events = 0  # sent, all streams
        self._by_client: dict[str, int] = {}
        self._wakes: set[asyncio.Event] = set()
        self._stopping = False
        # counter id -> (monotonic start, result) of its latest read, shared by its streams
        self._reads: dict[int, tuple[float, asyncio.Future[CounterView]]] = {}

    def stop(self) -> None:
        """End every stream now, and refuse new ones (the server is stopping)."""
        self._stopping = True
        for wake in self._wakes:
            wake.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send, route: Route) -> None:
        _, workspace, name = route
        now = time.monotonic()
        auth = header(scope, b"authorization")
        token, limits = await self.api.gate.admit(scope, route, now)
        view = await self.api.counters.get(workspace, name, token)  # the rules of get

        async def check(heartbeat: bool) -> Counter:
            # the token again (cached): a revoked one ends the stream
            token = await self.api.verifier.verify(auth, time.monotonic())
            return await self.api.counters.readable(workspace, name, token)

        client = client_key(scope, self.api.trusted_proxies, self.api.ipv6_prefix)
        label = f"{workspace}/{name}"
        await self.serve(
            receive, send, client, view.counter.id, check, STREAM_HEADERS + (limits or []), label
        )

    async def serve(
        self,
        receive: Receive,
        send: Send,
        client: str,
        counter_id: int,
        check: Check,
        headers: Headers,
        label: str,
    ) -> None:
        """Stream the counter `counter_id` to a client whose access the caller checked;
        `check` is called before every read (with True at a heartbeat), returns the
        counter and raises TallyError once access ends (token revoked, session ended,
        counter gone). `client` is the client key (tally.web.http.client_key).
        Admission (the limits per client key and per node) and the rest are the same
        for every caller: the API's route above, and the dashboard's (tally/site/live.py)."""
        self._admit(client)
        try:
            await self._serve(receive, send, counter_id, check, headers, label)
        finally:
            self._release(client)

    def _admit(self, client: str) -> None:
        retry = [(b"retry-after", b"%d" % math.ceil(RETRY_MS / 1000))]
        if self._stopping:
            raise RateLimited("the server is stopping: connect again", retry)
        if self.open >= self.per_node:
            raise RateLimited(
                f"this server has {self.per_node} streams open, its limit: try again later",
                retry,
            )
        if self._by_client.get(client, 0) >= self.per_client:
            raise RateLimited(
                f"{self.per_client} streams are open from your address, the limit: close one first",
                retry,
            )
        self.open += 1
        self._by_client[client] = self._by_client.get(client, 0) + 1

    def _release(self, client: str) -> None:
        self.open -= 1
        left = self._by_client[client] - 1
        if left:
            self._by_client[client] = left
        else:
            del self._by_client[client]

    async def _serve(
        self,
        receive: Receive,
        send: Send,
        counter_id: int,
        check: Check,
        headers: Headers,
        label: str,
    ) -> None:
        wake = asyncio.Event()
        gone = asyncio.get_running_loop().create_task(_until_disconnect(receive, wake))
        self._wakes.add(wake)
        # watch before reading, so no change between the read and the watch is missed
        self.feed.watch(counter_id, wake)
        ended: TallyError | None = None
        try:
            await send(response_start(200, headers))
            view = await self._read(counter_id, check, time.monotonic(), False)
            last = _event_id(view.up_count, view.down_count, view.updated_at)
            first = b"retry: %d\n" % RETRY_MS + self._event(last, view)
            await send({"type": "http.response.body", "body": first, "more_body": True})
            self.events += 1
            sent_at = poll_at = time.monotonic()
            beat_at = sent_at + self.heartbeat
            while True:
                due = beat_at if self.feed.remote else min(beat_at, poll_at + self.poll_interval)
                if not wake.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(0.0, due - time.monotonic())):
                            await wake.wait()
                if self._stopping or gone.done():
                    break
                now = time.monotonic()
                beat = now >= beat_at
                if wake.is_set() and now < sent_at + self.min_gap:
                    await asyncio.sleep(sent_at + self.min_gap - now)  # coalesce the gap
                    if self._stopping or gone.done():
                        break
                # a change, a poll (other nodes not heard) or a heartbeat: read, with the
                # access checked again, so a stream ends at the latest one heartbeat after
                # its access did (the cached settings allowing: TALLY_TOKEN_CACHE_TTL)
                since = time.monotonic()
                wake.clear()
                view = await self._read(counter_id, check, since, beat)
                poll_at = time.monotonic()
                current = _event_id(view.up_count, view.down_count, view.updated_at)
                if current != last:
                    last = current
                    body = self._event(current, view)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    self.events += 1
                    sent_at = time.monotonic()
                    beat_at = sent_at + self.heartbeat
                elif beat:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": b": heartbeat\n\n",
                            "more_body": True,
                        }
                    )
                    beat_at = time.monotonic() + self.heartbeat
            if self._stopping and not gone.done():
                ended = Stopping()
        except TallyError as exc:
            # the counter went away, the token was revoked: end the stream saying why;
            # EventSource reconnects, and gets the error as the answer
            log.info("stream %s ended: %s", label, exc)
            ended = exc
        except StorageError as exc:  # the database is down: the same, as a 503
            log.info("stream %s ended: %s", label, exc)
            ended = Unavailable()
        except OSError:
            pass  # a send to a client that left fails: that is no error
        except Exception as exc:
            if not gone.done():
                log.warning("stream %s failed: %r", label, exc)
        finally:
            self._wakes.discard(wake)
            if not self._wakes:  # a set keeps its largest size: give the room back
                self._wakes = set()
            self.feed.unwatch(counter_id, wake)
            if not self.feed.watching(counter_id):
                self._reads.pop(counter_id, None)
            gone.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await gone
        last_body = end_event(ended) if ended is not None else b""
        with contextlib.suppress(Exception):  # the client may be gone
            await send({"type": "http.response.body", "body": last_body, "more_body": False})

    async def _read(
        self, counter_id: int, check: Check, since: float, heartbeat: bool
    ) -> CounterView:
        """The counter now, for a stream woken at `since`: its access checked again (from
        the caches), its counts from a read begun at `since` or later, which the streams
        of one counter share (1,000 streams woken by one change make one read).
        Replaced if the name now holds another counter than the stream's."""
        counter = await check(heartbeat)
        if counter.id != counter_id:
            raise Replaced()
        shared = self._reads.get(counter.id)
        if shared is not None and shared[0] >= since:
            return await asyncio.shield(shared[1])
        future: asyncio.Future[CounterView] = asyncio.get_running_loop().create_future()
        self._reads[counter.id] = (time.monotonic(), future)
        try:
            view = await self.api.counters.current(counter)
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else StorageError("stopped"))
            future.exception()  # retrieved: no stream may be waiting for it
            raise
        finally:
            if not self.feed.watching(counter.id):
                self._reads.pop(counter.id, None)
        future.set_result(view)
        return view

    def _event(self, event_id: bytes, view: CounterView) -> bytes:
        data = self.api.render.data(view)
        return b"id: " + event_id + b"\ndata: " + data + b"\n\n"


def _event_id(up: int, down: int, updated_at: float) -> bytes:
    return b"%d-%d-%d" % (up, down, int(updated_at * 1000))


async def _until_disconnect(receive: Receive, wake: asyncio.Event) -> None:
    """Return when the client has gone, and wake its stream."""
    try:
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                return
    finally:
        wake.set()
