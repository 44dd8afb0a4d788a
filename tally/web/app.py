"""`create_app(settings)`: the ASGI application and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import uuid
from dataclasses import dataclass

from tally.auth import TokenVerifier
from tally.config import Settings
from tally.counters import Counters
from tally.errors import NotFound, StorageError, TallyError, Unavailable
from tally.live import ChangeFeed
from tally.ratelimit import Limiter, LocalLimiter
from tally.storage import Store, store_from_url
from tally.web import metrics
from tally.web.api import V2Api
from tally.web.badge import BadgeEndpoint
from tally.web.download import PREFIX, ExportEndpoint
from tally.web.http import Receive, Scope, Send, send_error, send_json, send_text
from tally.web.stream import Streams
from tally.writes import GroupCommit

log = logging.getLogger("tally.web")

# seconds shutdown waits for requests in flight before the last flush
REQUEST_GRACE = 5.0


async def load_secret_key(store: Store, settings: Settings) -> bytes:
    """TALLY_SECRET_KEY if set; else a key generated once and kept in the database."""
    if settings.secret_key:
        return settings.secret_key.encode()
    return (await store.meta_get_or_set("secret_key", secrets.token_hex(32))).encode()


def node_name() -> str:
    """A name of this process's own: host and pid for people, a UUID for uniqueness."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"


def make_limiter(s: Settings) -> Limiter | None:
    if s.rate_limit is None:
        return None
    if s.redis_url:
        from tally.storage.redis_limiter import RedisRateLimiter, redis_client

        return RedisRateLimiter(
            redis_client(s.redis_url),
            s.rate_limit.limit,
            s.rate_limit.period,
            prefix=s.redis_prefix,
        )
    return LocalLimiter(s.rate_limit.limit, s.rate_limit.period)


async def open_store(store: Store, attempts: int = 30, delay: float = 1.0) -> None:
    """Open the store, waiting for a database that is still starting (bounded)."""
    for attempt in range(1, attempts + 1):
        try:
            await store.open()
            return
        except StorageError as exc:
            if attempt == attempts:
                raise
            log.warning("database not reachable (%s); retrying in %g s", exc, delay)
            await asyncio.sleep(delay)


def make_feed(s: Settings, store: Store) -> ChangeFeed:
    bus = None
    if s.redis_url:
        from tally.storage.redis_feed import RedisBus

        bus = RedisBus(s.redis_url, s.redis_prefix)
    return ChangeFeed(bus, shared_store=store.dialect != "sqlite")


def end_streams_on(signals: tuple[signal.Signals, ...], streams: Streams) -> None:
    """On these signals, end the live streams at once.

    granian lets the requests in flight finish before it tells the app to stop (lifespan
    shutdown), and a stream never finishes by itself: it would hold the server forever.
    The loop's own handlers (granian's, which begin the shutdown) are dispatched from
    the signal wake-up fd, so they still run; this handler only replaces the no-op that
    the Python level of a loop's signal handling leaves. Call it from the main thread,
    after the loop's handlers were added (lifespan startup)."""
    loop = asyncio.get_running_loop()

    def handler(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(streams.stop)

    for sig in signals:
        signal.signal(sig, handler)


@dataclass
class Services:
    store: Store
    writes: GroupCommit
    counters: Counters
    verifier: TokenVerifier
    api: V2Api
    export: ExportEndpoint
    feed: ChangeFeed
    streams: Streams


class App:
    """The ASGI application. Services exist between lifespan startup and shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: Services | None = None
        # set by `tally serve`: end live streams on SIGTERM / SIGINT (see end_streams_on)
        self.handle_signals = False
        # requests being handled; shutdown waits (bounded) for them before the last flush
        self._inflight = 0
        self._idle: asyncio.Event | None = None  # set by shutdown, signalled at 0

    async def startup(self) -> None:
        s = self.settings
        store = store_from_url(s.database_url, node=node_name())
        # a server database may still be starting; a missing SQLite file's folder will not
        await open_store(store, attempts=1 if store.dialect == "sqlite" else 30)
        linger = store.commit_linger if s.commit_linger is None else s.commit_linger
        writes = GroupCommit(
            store, durability=s.durability, flush_interval=s.flush_interval, linger=linger
        )
        await store.claim_node()
        writes.start(await store.register_node())
        counters = Counters(store, writes, s.timezone, s.token_cache_ttl)
        verifier = TokenVerifier(store, await load_secret_key(store, s), s.token_cache_ttl)
        limiter = make_limiter(s)
        api = V2Api(counters, verifier, limiter, s.trusted_proxies)
        api.handlers[b"badge.svg"] = BadgeEndpoint(api)
        feed = make_feed(s, store)
        writes.on_commit.append(feed.on_commit)
        feed.start()
        streams = Streams(api, feed, s.streams_per_client, s.streams_per_node)
        api.handlers[b"stream"] = streams
        self.services = Services(
            store, writes, counters, verifier, api, ExportEndpoint(api), feed, streams
        )
        if self.handle_signals:
            end_streams_on((signal.SIGTERM, signal.SIGINT), streams)

    async def shutdown(self) -> None:
        services, self.services = self.services, None  # new requests: 503 from now on
        if services is None:
            return
        services.streams.stop()  # they end at once: nothing for the grace below to wait for
        if self._inflight:
            # Requests already inside (past authentication, waiting for the limiter or a
            # lookup) may still add a change: let them, so none is acknowledged after
            # the last flush. Bounded: after REQUEST_GRACE s, stop refuses their change.
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), REQUEST_GRACE)
        try:
            await services.writes.stop()
        finally:
            await services.feed.close()
            await services.store.close()
            if services.api.limiter is not None:
                await services.api.limiter.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: bytes = scope.get("raw_path") or scope["path"].encode()
        path = path.split(b"?", 1)[0]
        self._inflight += 1
        try:
            services = self.services
            if services is None:
                raise Unavailable("the server is starting or stopping")
            if path.startswith(b"/v2/"):
                await services.api(scope, receive, send, path)
            elif path.startswith(PREFIX):
                await services.export(scope, send, path)
            elif path == b"/healthz":
                await send_json(send, 200, {"status": "ok"})
            elif path == b"/metrics":
                await send_text(send, metrics.render(services), metrics.CONTENT_TYPE)
            else:
                raise NotFound()
        except TallyError as exc:
            await send_error(send, exc)
        except StorageError as exc:
            log.warning("storage error on %s: %s", path, exc)
            await send_error(send, Unavailable())
        except Exception:
            log.exception("unexpected error on %s", path)
            # the response may have started, or the client gone: never let this escape
            with contextlib.suppress(Exception):
                await send_error(send, TallyError("internal error"))
        finally:
            self._inflight -= 1
            if not self._inflight and self._idle is not None:
                self._idle.set()

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    log.exception("shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(settings: Settings | None = None) -> App:
    return App(settings or Settings.from_env())
