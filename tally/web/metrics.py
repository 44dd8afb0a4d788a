"""Prometheus metrics: plain ints on the hot path, read by a collector at scrape time.

`RequestMetrics` counts requests by route template and status, and their latency, in
plain ints and `Histogram`s (a prometheus-client Counter or Histogram takes a lock per
observation). `TallyCollector` turns those, the group commit's, the limiters' and the
website's (sign-ins, emails) counters into metric families when Prometheus scrapes, and
`scrape` writes them in the text format (after reading the SQLite disk's free space in a
thread: `DiskSpace`).

Where it is served (never to everyone by default; docs/deploying.md shows the scrape):

- `TALLY_METRICS_TOKEN`: GET /metrics on the API port, with that bearer token;
- `TALLY_METRICS_ADDRESS`: a listener of its own (`MetricsListener`), on the worker's
  event loop, that answers GET /metrics to whoever reaches it.

Neither set: nothing is counted and /metrics is a 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tally import passwords
from tally.histogram import LATENCY_BOUNDS, Histogram

if TYPE_CHECKING:
    from tally.storage import Store
    from tally.web.app import Services

log = logging.getLogger("tally.metrics")

# what generate_latest writes (the classic text format every Prometheus reads)
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

# the Redis limiter's counters: (metric without _total, attribute of RedisRateLimiter, help)
REDIS_LIMITER_COUNTERS = (
    ("tally_ratelimit_redis_fallbacks", "fallbacks", "Times this node fell back to its own."),
    (
        "tally_ratelimit_redis_calls",
        "batches",
        "Script calls sent to Redis (each carries every hit waiting for one).",
    ),
    ("tally_ratelimit_redis_hits", "hits", "Hits decided by a call to Redis."),
    (
        "tally_ratelimit_redis_reserved_hits",
        "reserved_hits",
        "Hits admitted from cells this node had reserved in Redis, without a call.",
    ),
    (
        "tally_ratelimit_redis_blocked_hits",
        "blocked_hits",
        "Hits refused without a call because Redis had just refused their key.",
    ),
)


class RequestMetrics:
    """What the HTTP layer counts per request. Only ever touched on the event loop."""

    __slots__ = ("durations", "requests", "store_errors")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.durations: dict[str, Histogram] = {}
        self.store_errors = 0  # requests whose database read failed (answered 503)

    def observe(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.durations.get(route)
        if histogram is None:
            histogram = self.durations[route] = Histogram(LATENCY_BOUNDS)
        histogram.observe(seconds)


def histogram_family(name: str, help_text: str, histograms: dict[str, Histogram]) -> Metric:
    """One histogram family; `histograms` maps a route label ("" for none) to its data."""
    labels = ["route"] if any(histograms) else []
    family = HistogramMetricFamily(name, help_text, labels=labels)
    for label, h in histograms.items():
        family.add_metric([label] if label else [], h.buckets(), h.sum)
    return family


class DiskSpace:
    """Free and total bytes of the filesystem that holds the SQLite database, read in a
    thread before each scrape (statvfs may wait on a slow or network disk), so that an
    alert can page before the disk is full and every commit fails."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.free: int | None = None  # None until read: the metrics are left out
        self.size: int | None = None

    async def refresh(self) -> None:
        try:
            st = await asyncio.to_thread(os.statvfs, self.path)
        except OSError as exc:  # keep the last reading: a scrape never fails for it
            log.warning("metrics: could not read the free space of %s: %s", self.path, exc)
            return
        self.free = st.f_bavail * st.f_frsize  # what the server's (unprivileged) user gets
        self.size = st.f_blocks * st.f_frsize


def database_disk(store: Store) -> DiskSpace | None:
    """The disk of an SQLite store's file; None for a database server (it has its own)."""
    path = getattr(store, "path", None)
    if store.dialect != "sqlite" or path is None:
        return None
    return DiskSpace(os.path.dirname(os.path.abspath(path)))


class TallyCollector(Collector):
    """Reads the node's counters when scraped; `services` gives the running ones."""

    def __init__(self, requests: RequestMetrics, services: Callable[[], Services | None]):
        self.requests = requests
        self.services = services
        self.disk: DiskSpace | None = None  # set at startup on SQLite

    def collect(self) -> Iterable[Metric]:
        yield from self._requests()
        services = self.services()
        if services is not None:
            yield from self._writes(services)
            yield from self._limiter(services)
            yield from self._streams(services)
            yield from self._passwords(services)
            yield from self._site(services)
            yield from self._alerts(services)
        yield from self._disk()

    def _alerts(self, services: Services) -> Iterator[Metric]:
        deliveries = services.deliveries
        if deliveries is None:
            return
        tries = CounterMetricFamily(
            "tally_alert_deliveries",
            "Alert delivery tries of this node: delivered (2xx, or taken by SMTP), failed "
            "(every failed try), given_up (of those, the last after 24 h of failures).",
            labels=["result"],
        )
        tries.add_metric(["delivered"], deliveries.delivered)
        tries.add_metric(["failed"], deliveries.failed_tries)
        tries.add_metric(["given_up"], deliveries.given_up)
        yield tries

    def _site(self, services: Services) -> Iterator[Metric]:
        accounts = services.accounts
        if accounts is None:
            return
        signins = CounterMetricFamily(
            "tally_signins",
            "Sign-ins to the website: ok, wrong (email or password), throttled (refused).",
            labels=["result"],
        )
        for result, n in accounts.signins.items():
            signins.add_metric([result], n)
        yield signins
        mails = CounterMetricFamily(
            "tally_mails",
            "Emails: sent, failed (the SMTP server refused or was unreachable), throttled "
            "(the account had its emails for the hour: not sent).",
            labels=["result"],
        )
        mailer = accounts.mailer
        mails.add_metric(["sent"], mailer.sent)
        mails.add_metric(["failed"], mailer.failed)
        mails.add_metric(["throttled"], accounts.mails_throttled)
        yield mails

    def _disk(self) -> Iterator[Metric]:
        disk = self.disk
        if disk is None or disk.free is None or disk.size is None:
            return
        yield GaugeMetricFamily(
            "tally_database_disk_free_bytes",
            "Bytes free for the server on the filesystem of the SQLite database.",
            disk.free,
        )
        yield GaugeMetricFamily(
            "tally_database_disk_size_bytes",
            "Size in bytes of the filesystem of the SQLite database.",
            disk.size,
        )

    def _requests(self) -> Iterator[Metric]:
        r = self.requests
        total = CounterMetricFamily(
            "tally_http_requests",
            "HTTP requests answered, by route template and status.",
            labels=["route", "status"],
        )
        for (route, status), n in sorted(r.requests.items()):
            total.add_metric([route, str(status)], n)
        yield total
        yield histogram_family(
            "tally_http_request_duration_seconds",
            "Time from a request's arrival to its answer, by route template.",
            dict(sorted(r.durations.items())),
        )

    def _writes(self, services: Services) -> Iterator[Metric]:
        w = services.writes
        yield CounterMetricFamily(
            "tally_batches_committed",
            "Group-commit transactions committed.",
            value=w.batches_committed,
        )
        yield CounterMetricFamily(
            "tally_batches_failed",
            "Group-commit transactions that failed (store errors of the write path).",
            value=w.batches_failed,
        )
        yield CounterMetricFamily(
            "tally_changes_committed",
            "Counter changes committed (one per counter per batch).",
            value=w.changes_committed,
        )
        yield CounterMetricFamily(
            "tally_store_errors",
            "Database operations that failed: reads (answered 503) and group commits.",
            value=self.requests.store_errors + w.batches_failed,
        )
        yield GaugeMetricFamily(
            "tally_pending_changes", "Counter changes in memory, not yet committed.", w.pending
        )
        yield histogram_family(
            "tally_commit_duration_seconds",
            "Time a group commit's transaction took, committed or failed.",
            {"": w.commit_seconds},
        )
        yield histogram_family(
            "tally_batch_changes",
            "Counters changed per committed group commit.",
            {"": w.batch_changes},
        )
        yield histogram_family(
            "tally_batch_requests",
            "Requests that waited for each committed group commit (commit mode).",
            {"": w.batch_requests},
        )

    def _streams(self, services: Services) -> Iterator[Metric]:
        streams = services.streams
        yield GaugeMetricFamily("tally_streams_open", "Live streams open.", streams.open)
        yield CounterMetricFamily(
            "tally_stream_events", "Events sent on live streams.", value=streams.events
        )
        yield GaugeMetricFamily(
            "tally_streams_remote",
            "1 while other nodes' changes reach the streams (else they read every 2 s).",
            int(services.feed.remote),
        )
        yield GaugeMetricFamily(
            "tally_asyncio_tasks", "Tasks of the event loop.", len(asyncio.all_tasks())
        )

    def _passwords(self, services: Services) -> Iterator[Metric]:
        work = passwords.work
        yield CounterMetricFamily(
            "tally_password_verifications",
            "Passwords checked against a hash (sign-ins, password changes).",
            value=work.verifications,
        )
        yield CounterMetricFamily(
            "tally_password_hashes", "Password hashes made (sign-ups, new passwords).", work.hashes
        )
        yield CounterMetricFamily(
            "tally_password_busy",
            "Password checks and hashes refused (503) because the node's were all busy.",
            value=work.busy,
        )
        if services.windows is not None:
            yield CounterMetricFamily(
                "tally_throttle_redis_fallbacks",
                "Sign-in and mail limit decisions this node made alone (Redis failed or slow).",
                value=services.windows.windows.fallbacks,
            )

    def _limiter(self, services: Services) -> Iterator[Metric]:
        api = services.api
        yield CounterMetricFamily(
            "tally_ratelimit_rejections",
            "Requests refused with 429 by the rate limit.",
            value=api.rejections,
        )
        limiter = api.limiter
        fallback = getattr(limiter, "using_fallback", None)
        if fallback is None:
            return
        yield GaugeMetricFamily(
            "tally_ratelimit_redis_fallback",
            "1 while Redis is unreachable and this node limits on its own.",
            int(fallback),
        )
        if services.nodes is not None:
            yield GaugeMetricFamily(
                "tally_nodes_live",
                "Live nodes by their heartbeats in the database (alone, each admits 1/n).",
                services.nodes.count,
            )
        for name, attribute, help_text in REDIS_LIMITER_COUNTERS:
            yield CounterMetricFamily(name, help_text, value=getattr(limiter, attribute, 0))


def registry_for(collector: TallyCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


async def scrape(collector: TallyCollector, registry: CollectorRegistry) -> bytes:
    """The text of a scrape: the disk read first (in a thread), then every counter at once
    on the event loop (between requests, never during one)."""
    if collector.disk is not None:
        await collector.disk.refresh()
    return render(registry)


class MetricsListener:
    """TALLY_METRICS_ADDRESS: GET /metrics on a port of its own, on the worker's event
    loop (so a scrape reads the counters between requests, never during one). It speaks
    just enough HTTP/1.1 for a scraper: one request per connection."""

    _MAX_HEAD = 8192
    _TIMEOUT = 10.0

    def __init__(self, collector: TallyCollector, registry: CollectorRegistry) -> None:
        self.collector = collector
        self.registry = registry
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        try:
            self.server = await asyncio.start_server(self._serve, host, port, limit=self._MAX_HEAD)
        except OSError as exc:
            # `tally serve` checked the address before it started granian: another program
            # took it since. Say which setting to change, not only the socket's complaint.
            raise OSError(
                exc.errno, f"TALLY_METRICS_ADDRESS {host}:{port}: {exc.strerror or exc}"
            ) from None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5.0)
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
                method, _, rest = head.partition(b" ")
                target = rest.split(b" ", 1)[0].split(b"?", 1)[0]
                if method == b"GET" and target == b"/metrics":
                    body = await scrape(self.collector, self.registry)
                    status, ctype = b"200 OK", CONTENT_TYPE
                else:
                    status, ctype, body = b"404 Not Found", b"text/plain", b"not found\n"
                writer.write(
                    b"HTTP/1.1 %b\r\ncontent-type: %b\r\ncontent-length: %d\r\n"
                    b"connection: close\r\n\r\n%b" % (status, ctype, len(body), body)
                )
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the scraper went away or sent something else: nothing to answer
        except Exception:
            log.exception("metrics listener")
        finally:
            writer.close()
