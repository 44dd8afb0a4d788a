"""`create_app(settings)`: the ASGI application and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tally.auth import TokenVerifier, derive_key
from tally.config import RateLimit, Settings
from tally.counters import Counters
from tally.deliveries import Deliveries
from tally.errors import (
    MethodNotAllowed,
    NotFound,
    StorageError,
    TallyError,
    Unauthorized,
    Unavailable,
)
from tally.live import ChangeFeed
from tally.logs import REQUEST_ID
from tally.mail import Mailer, Outbox
from tally.namespaces import Namespaces
from tally.nodes import LiveNodes
from tally.ratelimit import Limiter, LocalLimiter
from tally.storage import Store, store_from_url
from tally.visitors import LocalVisitors, Visitors
from tally.web import docs, health, manage, metrics, pageview
from tally.web.api import OTHER, V2Api
from tally.web.badge import BadgeEndpoint
from tally.web.download import EXPORT_ROUTE, ExportEndpoint
from tally.web.download import PREFIX as EXPORT_PREFIX
from tally.web.http import (
    RESPONSE_STATUS,
    ASGIApp,
    Receive,
    Scope,
    Send,
    client_ip,
    header,
    send_error,
    send_text,
)
from tally.web.manage_alerts import ManageAlerts
from tally.web.request_id import RequestIds
from tally.web.scripts import send_script
from tally.web.stream import Streams
from tally.web.v1 import V1_OTHER, V1Api
from tally.writes import GroupCommit

if TYPE_CHECKING:
    from tally.accounts import Accounts  # the website's, imported with it (lazily)
    from tally.storage.redis_windows import SharedWindows

log = logging.getLogger("tally.web")
access_log = logging.getLogger("tally.access")
PROBES = frozenset(("/healthz", "/readyz"))  # asked every few seconds: never logged

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


def make_visitors(s: Settings) -> Visitors:
    """The unique visitors' seen-set: in Redis if there is one, else in this process."""
    if s.redis_url:
        from tally.storage.redis_limiter import redis_client
        from tally.storage.redis_visitors import RedisVisitors

        return RedisVisitors(
            redis_client(s.redis_url),
            prefix=s.redis_prefix,
            capacity=s.unique_capacity,
            per_counter=s.unique_per_counter,
        )
    return LocalVisitors(s.unique_capacity, per_counter=s.unique_per_counter)


def make_limiter(
    s: Settings,
    rate: RateLimit | None,
    nodes: LiveNodes | None,
    secret: bytes,
    prefix: str = "",
) -> Limiter | None:
    """A limiter of `rate`, shared through Redis if there is one (its keys under
    TALLY_REDIS_PREFIX + `prefix`, their names hashed with a key derived from `secret`,
    the server's secret key; while Redis is away, this node's share by `nodes`)."""
    if rate is None:
        return None
    if s.redis_url:
        from tally.storage.redis_limiter import RedisRateLimiter, redis_client

        return RedisRateLimiter(
            redis_client(s.redis_url),
            rate.limit,
            rate.period,
            secret=derive_key(secret, b"ratelimit"),
            prefix=s.redis_prefix + prefix,
            nodes=None if nodes is None else (lambda: nodes.count),
        )
    return LocalLimiter(rate.limit, rate.period)


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


Page = Callable[[Scope, Send], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    """A route outside /v2: its handler, and whether /openapi.json describes it."""

    page: Page
    documented: bool = True


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
    v1: V1Api
    manage: manage.ManageApi  # the management API, beside /v2 (tally.web.manage)
    pageviews: pageview.PageViewEndpoint  # /count and /count.gif (tally.pageviews)
    site: ASGIApp  # the website (tally.site), for the paths that are not the API's
    export: ExportEndpoint
    feed: ChangeFeed
    streams: Streams
    windows: SharedWindows | None = None  # the site's sign-in throttle in Redis
    nodes: LiveNodes | None = None  # with Redis: the live nodes, for the limit's share
    outbox: Outbox | None = None  # the site's email, sent off the request
    accounts: Accounts | None = None  # the website's: its sign-ins and emails, for metrics
    deliveries: Deliveries | None = None  # alert firings to webhooks and email (tally.deliveries)


class App:
    """The ASGI application. Services exist between lifespan startup and shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: Services | None = None
        # set by `tally serve`: end live streams on SIGTERM / SIGINT (see end_streams_on)
        self.handle_signals = False
        # metrics: counted only where someone may read them (see tally.web.metrics)
        self.requests: metrics.RequestMetrics | None = None
        self.listener: metrics.MetricsListener | None = None
        self.collector: metrics.TallyCollector | None = None
        if settings.metrics_token or settings.metrics_address:
            self.requests = metrics.RequestMetrics()
            self.collector = metrics.TallyCollector(self.requests, lambda: self.services)
            self.registry = metrics.registry_for(self.collector)
        self._metrics_auth = (
            b"Bearer " + settings.metrics_token.encode() if settings.metrics_token else None
        )
        self.request_ids = RequestIds(settings.trusted_proxies)
        self.access_log = settings.access_log
        redis = bool(settings.redis_url)
        # every route but /v2's; tests/test_openapi.py holds the document to this table
        self.routes: dict[bytes, Route] = {
            b"/healthz": Route(lambda _scope, send: health.send_health(send)),
            b"/readyz": Route(
                lambda _scope, send: health.send_readiness(send, self.services, redis)
            ),
            b"/openapi.json": Route(lambda _scope, send: docs.send_openapi(send)),
            b"/docs": Route(lambda _scope, send: docs.send_page(send), documented=False),
            b"/docs/redoc.standalone.js": Route(
                lambda _scope, send: docs.send_redoc(send), documented=False
            ),
            b"/metrics": Route(self.send_metrics, documented=False),
            # the scripts a web page includes (tally.web.scripts)
            b"/count.js": Route(
                lambda scope, send: send_script(scope, send, "count.js"), documented=False
            ),
            b"/widget.js": Route(
                lambda scope, send: send_script(scope, send, "widget.js"), documented=False
            ),
        }
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
        nodes = None
        if s.redis_url:  # while Redis is away each node admits its share of the limit
            nodes = LiveNodes(store)
            await nodes.refresh()
            nodes.start()
        counters = Counters(store, writes, s.timezone, s.token_cache_ttl)
        counters.visitors = make_visitors(s)
        store.counter_quota = s.counter_quota
        verifier = TokenVerifier(store, await load_secret_key(store, s), s.token_cache_ttl)
        counters.creations = make_limiter(s, s.create_rate_limit, nodes, verifier.key, "create:")
        counters.share_views = make_limiter(s, s.share_rate_limit, nodes, verifier.key, "share:")
        limiter = make_limiter(s, s.rate_limit, nodes, verifier.key)
        api = V2Api(counters, verifier, limiter, s.trusted_proxies, s.ipv6_prefix)
        api.handlers[b"badge.svg"] = BadgeEndpoint(api)
        feed = make_feed(s, store)
        writes.on_commit.append(feed.on_commit)
        feed.start()
        streams = Streams(api, feed, s.streams_per_client, s.streams_per_node, s.stream_heartbeat)
        api.handlers[b"stream"] = streams
        namespaces = Namespaces(counters, s.token_cache_ttl)
        v1 = V1Api(
            namespaces,
            make_limiter(s, s.v1_rate_limit, nodes, verifier.key, "v1:"),
            s.trusted_proxies,
            s.ipv6_prefix,
        )
        managed = manage.ManageApi(store, namespaces, verifier, api)
        managed.public_url = s.public_url
        from tally.site.app import create_site, site_accounts, site_windows  # not /v2's path

        windows = site_windows(s, verifier.key, nodes)
        outbox = Outbox(Mailer(s))
        people = site_accounts(s, store, outbox, windows)
        deliveries = Deliveries(
            store,
            outbox.mailer,
            timeout=s.webhook_timeout,
            interval=s.alert_interval,
            backoff_scale=s.alert_backoff_scale,
            allow_private=s.webhook_private,
        )
        writes.on_commit.append(deliveries.on_commit)
        deliveries.start()
        managed.alerts = ManageAlerts(
            store, s.webhook_private, outbox.mailer.configured, deliveries.poke
        )
        site = create_site(s, store, counters, verifier.key, streams, people, deliveries.poke)
        self.services = Services(
            store,
            writes,
            counters,
            verifier,
            api,
            v1,
            managed,
            pageview.PageViewEndpoint(api),
            site,
            ExportEndpoint(api),
            feed,
            streams,
            windows,
            nodes,
            outbox,
            people,
            deliveries,
        )
        if self.collector is not None:
            self.collector.disk = metrics.database_disk(store)
        if self.handle_signals:
            end_streams_on((signal.SIGTERM, signal.SIGINT), streams)
        if s.metrics_address is not None:
            assert self.collector is not None
            self.listener = metrics.MetricsListener(self.collector, self.registry)
            await self.listener.start(*s.metrics_address)

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
            if self.listener is not None:
                await self.listener.close()
            await services.verifier.drain()
            await services.writes.stop()
        finally:
            if services.deliveries is not None:
                await services.deliveries.stop()
            if services.outbox is not None:  # before the store it writes links to
                await services.outbox.close()
            if services.nodes is not None:
                await services.nodes.close()
            await services.feed.close()
            await services.store.close()
            await services.counters.visitors.close()
            limiters = (services.api.gate.limiter, services.v1.gate.limiter)
            for limiter in (*limiters, services.counters.creations, services.counters.share_views):
                if limiter is not None:
                    await limiter.close()
            if services.windows is not None:
                await services.windows.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request under its id (on the answer, see `response_start`, and on
        its log lines); its status and time only for the metrics or the access log."""
        request_id = self.request_ids.take(scope)
        context = REQUEST_ID.set(request_id)
        try:
            if self.requests is None and not self.access_log:
                await self.dispatch(scope, receive, send)
                return
            started = time.perf_counter()
            answered = RESPONSE_STATUS.set(0)
            route = await self.dispatch(scope, receive, send)
            seconds = time.perf_counter() - started
            status = RESPONSE_STATUS.get() or 500  # 0: no answer started (client gone)
            RESPONSE_STATUS.reset(answered)
            if self.requests is not None:
                self.requests.observe(route, status, seconds)
            if self.access_log and route not in PROBES:
                self.log_access(scope, status, seconds, request_id)
        finally:
            REQUEST_ID.reset(context)

    def log_access(self, scope: Scope, status: int, seconds: float, request_id: bytes) -> None:
        """One line per request: never its headers (tokens) nor its query string."""
        client = client_ip(scope, self.settings.trusted_proxies)
        access_log.info(
            "%s %s %d %.1f ms %s",
            scope["method"],
            scope["path"],
            status,
            seconds * 1000,
            client,
            extra={
                "request_id": request_id.decode(),
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "client": client,
            },
        )

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> str:
        """Answer the request; its route template (for the metrics)."""
        path: bytes = scope.get("raw_path") or scope["path"].encode()
        path = path.split(b"?", 1)[0]
        route = "other"
        services = self.services
        self._inflight += 1
        try:
            if path.startswith(b"/v2/"):
                if services is None:
                    raise Unavailable("the server is starting or stopping")
                route = OTHER
                managed = manage.match(path) if b"/-/" in path else None
                if managed is not None:
                    route = managed.template
                    route = await services.manage(scope, receive, send, managed)
                else:
                    route = await services.api(scope, receive, send, path)
            elif path.startswith(b"/v1/"):
                if services is None:
                    raise Unavailable("the server is starting or stopping")
                route = V1_OTHER
                route = await services.v1(scope, send, path)
            elif path.startswith(EXPORT_PREFIX):
                if services is None:
                    raise Unavailable("the server is starting or stopping")
                route = EXPORT_ROUTE
                await services.export(scope, send, path)
            elif path == pageview.COUNT or path == pageview.PIXEL:
                if services is None:
                    raise Unavailable("the server is starting or stopping")
                route = path.decode()
                await services.pageviews(scope, send, path)
            elif path in self.routes:
                page = self.routes[path]
                route = path.decode()
                if scope["method"] not in ("GET", "HEAD"):
                    raise MethodNotAllowed(f"{scope['method']} is not allowed here: use GET")
                await page.page(scope, send)
            elif path == b"/v2":
                raise NotFound()
            else:  # the website: the dashboard's pages and static files
                if services is None:
                    raise Unavailable("the server is starting or stopping")
                route = "dashboard"
                await services.site(scope, receive, send)
        except TallyError as exc:
            await send_error(send, exc)
        except StorageError as exc:
            log.warning("storage error on %s: %s", scope["path"], exc)
            if self.requests is not None:
                self.requests.store_errors += 1
            await send_error(send, Unavailable())
        except Exception:
            log.exception("unexpected error on %s", scope["path"])
            # the response may have started, or the client gone: never let this escape
            with contextlib.suppress(Exception):
                await send_error(send, TallyError("internal error"))
        finally:
            self._inflight -= 1
            if not self._inflight and self._idle is not None:
                self._idle.set()
        if route == OTHER and services is not None:
            route = services.api.template(path)  # the API failed before it could say
        return route

    async def send_metrics(self, scope: Scope, send: Send) -> None:
        """GET /metrics on the API port: only with TALLY_METRICS_TOKEN, and that token."""
        expected = self._metrics_auth
        if expected is None:
            raise NotFound()
        given = header(scope, b"authorization") or b""
        if not hmac.compare_digest(given, expected):
            raise Unauthorized("/metrics needs the bearer token of TALLY_METRICS_TOKEN")
        assert self.collector is not None
        body = await metrics.scrape(self.collector, self.registry)
        await send_text(send, body, metrics.CONTENT_TYPE)

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
