"""/metrics: Prometheus text from prometheus-client, never public by default, and
nothing in it (nor in the node's work) that tells an existing private counter from a
missing one."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import BrowserFactory, Harness, HarnessFactory
from helpers import assert_error
from prometheus_client.parser import text_string_to_metric_families
from promserver import documented_metrics, unknown_metrics
from services import TcpProxy

from tally.config import RateLimit
from tally.counters import Counters
from tally.models import Counter, Permission

METRICS_TOKEN = "m" * 32
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(h: Harness) -> Samples:
    r = await h.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(r.text)


async def scrape_until(
    h: Harness, done: Callable[[Samples], bool], within: float = 10.0
) -> Samples:
    """Scrape until `done` holds of the samples (at most `within` s); the last scrape."""
    deadline = time.monotonic() + within
    s = await scrape(h)
    while not done(s) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        s = await scrape(h)
    return s


def value(s: Samples, name: str, **labels: str) -> float:
    return s.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_not_served_by_default(harness: Harness) -> None:
    """Without TALLY_METRICS_TOKEN or TALLY_METRICS_ADDRESS, /metrics is a 404."""
    assert harness.app.requests is None  # and nothing is counted
    assert_error(await harness.client.get("/metrics"), 404)
    bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert_error(await harness.client.get("/metrics", headers=bearer), 404)


async def test_token_required(make_harness: HarnessFactory) -> None:
    """With TALLY_METRICS_TOKEN, /metrics answers only that bearer token."""
    h = await make_harness(metrics_token=METRICS_TOKEN)
    assert_error(await h.client.get("/metrics"), 401)
    wrong = {"Authorization": f"Bearer {'x' * 32}"}
    assert_error(await h.client.get("/metrics", headers=wrong), 401)
    assert await scrape(h)


async def test_requests_commits_and_rejections(make_harness: HarnessFactory) -> None:
    """Requests by route template and status, their latency, the group commit's batches
    and the limiter's rejections are counted."""
    h = await make_harness(metrics_token=METRICS_TOKEN, rate_limit=RateLimit(3, 60.0))
    ws = await h.workspace()
    token = await h.token(ws, Permission.WRITE)
    for _ in range(4):
        await h.get("/v2/ws/hits/up", token)
    await h.get("/v2/ws/nothing/here/at/all")
    s = await scrape(h)
    up = "/v2/{workspace}/{name}/up"
    assert value(s, "tally_http_requests_total", route=up, status="200") == 3
    assert value(s, "tally_http_requests_total", route=up, status="429") == 1
    assert value(s, "tally_http_requests_total", route="/v2/other", status="404") == 1
    assert value(s, "tally_http_request_duration_seconds_count", route=up) == 4
    assert value(s, "tally_http_request_duration_seconds_bucket", route=up, le="+Inf") == 4
    assert value(s, "tally_ratelimit_rejections_total") == 1
    assert value(s, "tally_batches_committed_total") >= 1
    assert value(s, "tally_batch_changes_count") == value(s, "tally_batches_committed_total")
    assert value(s, "tally_batch_requests_sum") == 3
    assert value(s, "tally_commit_duration_seconds_count") >= 1
    assert value(s, "tally_pending_changes") == 0
    assert value(s, "tally_store_errors_total") == 0
    if h.app.settings.redis_url:
        assert value(s, "tally_ratelimit_redis_fallback") == 0
        assert ("tally_ratelimit_redis_hits_total", ()) in s
        assert value(s, "tally_nodes_live") == 1


async def test_separate_listener(make_harness: HarnessFactory) -> None:
    """TALLY_METRICS_ADDRESS serves /metrics on a port of its own, without a token, and
    the API port does not serve it."""
    h = await make_harness(metrics_address=("127.0.0.1", 0))
    await h.get("/v2/ws/x")
    assert_error(await h.client.get("/metrics"), 404)
    assert h.app.listener is not None
    base = f"http://127.0.0.1:{h.app.listener.port}"
    async with httpx.AsyncClient(base_url=base, trust_env=False) as client:
        r = await client.get("/metrics")
        assert r.status_code == 200
        route = "/v2/{workspace}/{name}"
        assert value(samples(r.text), "tally_http_requests_total", route=route, status="404")
        assert (await client.get("/other")).status_code == 404


class ReadCounting:
    """Counts the store reads of counters a `Counters` makes (the real store answers)."""

    def __init__(self, counters: Counters) -> None:
        self.reads = 0
        read = counters.store.read_counter

        async def counting(workspace: str, name: str) -> Counter | None:
            self.reads += 1
            return await read(workspace, name)

        counters.store.read_counter = counting  # type: ignore[method-assign,assignment]


NODE_STATE = ("tally_streams_remote", "tally_asyncio_tasks", "tally_database_disk_free_bytes")


@pytest.mark.parametrize("action", ["", "/up", "/stats"])
async def test_private_lookup_is_indistinguishable_from_missing(
    make_harness: HarnessFactory, action: str
) -> None:
    """Anonymous lookups of an existing private counter and of a missing one leave the
    same metrics (but for timings) and cost the same store reads."""
    seen: list[tuple[Samples, int]] = []
    for kind in ("private", "missing"):
        h = await make_harness(metrics_token=METRICS_TOKEN)
        ws = await h.workspace(kind)  # both apps share the test's database
        if kind == "private":
            await h.counter(ws, "secret", private=True)
        before = await scrape(h)
        assert h.app.services is not None
        spy = ReadCounting(h.app.services.counters)
        for _ in range(3):
            assert_error(await h.get(f"/v2/{kind}/secret{action}"), 404)
        after = await scrape(h)
        moved = {
            key: after.get(key, 0.0) - before.get(key, 0.0)
            for key in after.keys() | before.keys()
            if "duration" not in key[0]
            and key[0] not in NODE_STATE  # the node's own state, moved by its tasks
            and after.get(key) != before.get(key)
        }
        moved.pop(("tally_http_requests_total", (("route", "/metrics"), ("status", "200"))))
        seen.append((moved, spy.reads))
    assert seen[0] == seen[1]
    assert seen[0][1] == 1  # one read per TALLY_TOKEN_CACHE_TTL, found or not


@pytest.mark.postgres
async def test_store_errors_are_counted(make_harness: HarnessFactory, postgres_url: str) -> None:
    """A request whose database is gone is answered 503 and counted as a store error."""
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = postgres_url.replace(target.netloc, f"{target.username}@127.0.0.1:{proxy.port}")
    h = await make_harness(database_url=url, redis_url=None, metrics_token=METRICS_TOKEN)
    ws = await h.workspace("gone")
    await h.counter(ws, "c")
    assert (await h.get("/v2/gone/c")).status_code == 200
    await proxy.cut()
    assert_error(await h.get("/v2/gone/c"), 503)
    s = await scrape(h)
    assert value(s, "tally_store_errors_total") >= 1
    route = "/v2/{workspace}/{name}"
    assert value(s, "tally_http_requests_total", route=route, status="503") == 1


@pytest.mark.parametrize("action", ["", "/up", "/down", "/stats", "/reset"])
async def test_private_lookup_costs_what_a_missing_one_costs(harness: Harness, action: str) -> None:
    """Without metrics too: repeated anonymous lookups of an existing private counter
    read the store exactly as often as those of a missing one (once per cache TTL), so
    their timing does not tell them apart either."""
    ws = await harness.workspace()
    await harness.counter(ws, "secret", private=True)
    assert harness.app.services is not None
    spy = ReadCounting(harness.app.services.counters)
    reads = {}
    for name in ("secret", "missing"):
        before = spy.reads
        for _ in range(4):
            r = await harness.get(f"/v2/ws/{name}{action}")
            assert r.status_code in (401, 404), r.text
        reads[name] = spy.reads - before
    assert reads["secret"] == reads["missing"] == 1


async def test_a_taken_metrics_address_names_the_setting() -> None:
    """The listener on an address another program holds fails naming
    TALLY_METRICS_ADDRESS (the worker's log says which setting to change)."""
    import socket

    from prometheus_client import CollectorRegistry

    from tally.web.metrics import MetricsListener, RequestMetrics, TallyCollector

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        registry = CollectorRegistry()
        collector = TallyCollector(RequestMetrics(), lambda: None)
        listener = MetricsListener(collector, registry)
        with pytest.raises(OSError, match=f"^.*TALLY_METRICS_ADDRESS 127.0.0.1:{port}: .*in use"):
            await listener.start("127.0.0.1", port)
        await listener.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_sign_ins_and_emails_are_counted(
    make_harness: HarnessFactory, make_browser: BrowserFactory
) -> None:
    """tally_signins_total counts sign-ins by result (ok, wrong, throttled) and
    tally_mails_total emails by result (sent, failed, throttled), every result there at 0
    from the start (an alert's query has data before the first refusal)."""
    h = await make_harness(
        metrics_token=METRICS_TOKEN,
        smtp_host="127.0.0.1",
        smtp_port=_closed_port(),  # nothing listens: every email fails
        smtp_security="none",
        public_url="http://tally.test",  # mailed links start with it
    )
    s = await scrape(h)
    for result in ("ok", "wrong", "throttled"):
        assert (("tally_signins_total", (("result", result),))) in s
    for result in ("sent", "failed", "throttled"):
        assert (("tally_mails_total", (("result", result),))) in s
    b = await make_browser(h)
    assert (await b.sign_up("ann@example.com")).status_code in (200, 303)  # its email fails
    # the confirmation is mailed by a job the sign-up's job queues: done before the resets
    # are asked for, the jobs run in one order (the refused 6th email last) every time
    await h.mail_sent()
    before = await scrape(h)  # (a sign-up may sign its account in)
    for _ in range(5):  # the account's 2nd to 5th emails fail, the 6th is refused
        assert (await b.submit("/forgot", {"email": "ann@example.com"})).status_code == 303
    other = await make_browser(h, ip="203.0.113.9")
    assert (await other.log_in("ann@example.com")).status_code == 303
    for _ in range(5):
        assert (await other.log_in("ann@example.com", "wrong password")).status_code == 401
    assert (await other.log_in("ann@example.com")).status_code == 429
    # emails are sent off the request, one job after another: wait until the last job
    # (the 6th email, refused) is done. (Waiting for 5 failed ones is not enough: the
    # refusal is counted by the job after the 5th failure.)
    await h.mail_sent()
    s = await scrape(h)
    for result, n in (("ok", 1), ("wrong", 5), ("throttled", 1)):
        moved = value(s, "tally_signins_total", result=result) - value(
            before, "tally_signins_total", result=result
        )
        assert moved == n, result
    assert value(s, "tally_mails_total", result="sent") == 0
    assert value(s, "tally_mails_total", result="failed") == 5
    assert value(s, "tally_mails_total", result="throttled") == 1


async def test_emails_sent_are_counted(
    make_harness: HarnessFactory, make_browser: BrowserFactory
) -> None:
    """Without SMTP an email goes to the log, and counts as sent."""
    h = await make_harness(metrics_token=METRICS_TOKEN)
    assert (await (await make_browser(h)).sign_up("ann@example.com")).status_code in (200, 303)
    s = await scrape_until(h, lambda s: value(s, "tally_mails_total", result="sent") >= 1)
    assert value(s, "tally_mails_total", result="sent") == 1


async def test_disk_space_of_the_sqlite_database(make_harness: HarnessFactory) -> None:
    """On SQLite, the free and total bytes of the database's filesystem (what statvfs
    says now, within what the test itself may change); a database server has its own."""
    h = await make_harness(metrics_token=METRICS_TOKEN)
    s = await scrape(h)
    free = value(s, "tally_database_disk_free_bytes")
    size = value(s, "tally_database_disk_size_bytes")
    if h.store.dialect != "sqlite":
        assert ("tally_database_disk_free_bytes", ()) not in s
        assert ("tally_database_disk_size_bytes", ()) not in s
        return
    path = h.app.settings.database_url.removeprefix("sqlite:///")
    st = os.statvfs(os.path.dirname(path))
    assert size == st.f_blocks * st.f_frsize
    assert 0 < free <= size
    assert abs(free - st.f_bavail * st.f_frsize) < 256 * 2**20  # other agents write too


async def test_every_metric_is_documented(
    make_harness: HarnessFactory, make_browser: BrowserFactory
) -> None:
    """Every series a node exports, on each backend (the website's included), is a metric
    of the table in docs/deploying.md, which the alert rules and the dashboard are
    checked against (tests/test_monitoring.py)."""
    h = await make_harness(metrics_token=METRICS_TOKEN)
    assert (await (await make_browser(h)).sign_up("ann@example.com")).status_code == 303
    names = {name for name, _ in await scrape(h)}
    assert "tally_signins_total" in names
    assert unknown_metrics(" ".join(sorted(names)), documented_metrics()) == set()
