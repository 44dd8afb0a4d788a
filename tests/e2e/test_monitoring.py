"""The alert rules and the dashboard against the real thing: Debian's Prometheus on
loopback scrapes real `tally serve` processes (one on SQLite; two on PostgreSQL + Redis,
each reached through a proxy this test can cut) every second and evaluates the rules of
deploy/prometheus/ with their durations shrunk (tests/promserver.py).

Each checks that every PromQL expression of the rules and of the dashboard returns data
from the live servers (so none names a metric Tally does not export, or a label it does
not set), but those reading metrics the backend has not (Redis's on SQLite, the SQLite
disk's on PostgreSQL). Then it makes alerts fire on the real server, each within
seconds of its (shrunk) `for:`: on both, abusing the website's sign-in and reset forms
fires TallySignInRefusals, TallyMailsFailing and TallyMailBurst; on PostgreSQL + Redis,
cutting Redis fires TallyRedisLost, then cutting the database and killing a node fires
TallyDatabaseUnreachable, TallyGroupCommitFailing, TallyHighErrorRate and TallyNodeDown.

The machine's PostgreSQL and Redis are never stopped: the nodes reach them through
`TcpProxy`s, and "the database stops" is the proxy refusing and dropping connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from promserver import JOB, RANGE, Prometheus, alerts, binaries, shrink, shrunk_rules
from services import REDIS_URL, TcpProxy, require_redis

from tools import grafana_dashboard

from .server import HOST, TallyCli, TallyServer, burst, free_port

# both tests also attack the website (password guessing, mail bombing) to fire its alerts
pytestmark = [pytest.mark.e2e, pytest.mark.abuse]

COMPARISON_RE = re.compile(r"(==|!=|>=|<=|>|<)\s*(-?[0-9][0-9.e]*)")
REDIS_ONLY = re.compile(r"tally_ratelimit_redis_|tally_nodes_live")
SQLITE_ONLY = re.compile(r"tally_database_disk_")
# the alerts a fault makes fire: they must be silent before it
FAULT_ALERTS = (
    "TallyRedisLost",
    "TallyDatabaseUnreachable",
    "TallyHighErrorRate",
    "TallyNodeDown",
    "TallyGroupCommitFailing",
)
WEBSITE_ALERTS = ("TallySignInRefusals", "TallyMailsFailing", "TallyMailBurst")
STRONG = "a long passphrase 42"
SIGN_INS, RESETS = 60, 25  # (within the 30 emailing requests a client may make an hour)
ABUSED = {  # what `abuse_the_website` leaves in the metrics
    ("tally_signins_total", "ok"): 0,
    ("tally_signins_total", "wrong"): 5,
    ("tally_signins_total", "throttled"): SIGN_INS - 5,
    ("tally_mails_total", "sent"): 0,
    ("tally_mails_total", "failed"): 5,
    ("tally_mails_total", "throttled"): RESETS - 4,
}
# seconds: scrapes and evaluations every second and `for:` 3 s, but the 5xx ratio
# rises over 1 % only as the answers from before the cut leave its range (15 s), and a
# request to a node whose database is gone waits for the pool (3 s, twice) before its
# 503: that alert took 13 to 17 s here, the others 2.5 to 8 s
FIRE_WITHIN = 45.0


@pytest.fixture(scope="module")
def prometheus_binaries() -> tuple[str, str]:
    return binaries()


def expressions() -> list[str]:
    """Every expression of the rules (shrunk) and of the dashboard (its variables set),
    each with its comparisons turned into `bool` ones, so that it answers whether or not
    the alert's condition holds."""
    dashboard = [
        q.replace("$instance", ".*").replace("$__rate_interval", RANGE)
        for q in grafana_dashboard.queries()
    ]
    rules = [COMPARISON_RE.sub(r"\1 bool \2", shrink(rule["expr"])) for rule in alerts()]
    return rules + dashboard


def without_data(prom: Prometheus, skip: re.Pattern[str]) -> list[str]:
    """The expressions that return nothing now, but those reading a metric `skip` matches
    (the backend has not those)."""
    return [expr for expr in expressions() if not skip.search(expr) and not prom.query(expr)]


def wait_for(
    prom: Prometheus, wanted: set[tuple[str, str]], within: float
) -> tuple[set[tuple[str, str]], dict[str, float]]:
    """Poll the alerts until every (alert, instance) of `wanted` fires: what fires then,
    and the seconds each of `wanted` took to fire."""
    started = time.monotonic()
    took: dict[str, float] = {}
    while True:
        firing = prom.firing()
        now = time.monotonic() - started
        for name, _ in wanted & firing:
            took.setdefault(name, round(now, 1))
        if wanted <= firing or now > within:
            return firing, took
        time.sleep(0.5)


class ProxyThread:
    """A `TcpProxy` on an event loop of its own thread, so that the servers reach their
    service through it while this (synchronous) test waits, until `cut`."""

    def __init__(self, url: str, default_port: int) -> None:
        target = urlsplit(url)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = TcpProxy(target.hostname or HOST, target.port or default_port)
        self._run(self.proxy.start())
        self.port = self.proxy.port

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(10.0)

    def cut(self) -> None:
        self._run(self.proxy.cut())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10.0)
        self.loop.close()


class Load:
    """Ups on one path of each node, over and over in a thread, until `stop`: the traffic
    that makes a lost service show in the metrics."""

    def __init__(self, nodes: list[TallyServer], token: str) -> None:
        self.nodes = nodes
        self.token = token
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            for node in self.nodes:
                if node.running:
                    with contextlib.suppress(Exception):
                        asyncio.run(
                            burst(
                                node.port,
                                "/v2/ws/load/up",
                                total=10,
                                connections=2,
                                token=self.token,
                                time_limit=3.0,  # `stop` waits no longer
                            )
                        )
            time.sleep(0.25)  # light: a 2-core machine runs all of this

    def stop(self) -> None:
        self.done.set()
        self.thread.join(30.0)


class Website:
    """The website's forms on a real server, submitted as a browser does (CSRF and all)."""

    def __init__(self, node: TallyServer) -> None:
        self.client = httpx.Client(base_url=node.base_url, trust_env=False, timeout=30.0)
        self.csrf = ""  # the form token of this client's CSRF cookie (one per cookie)

    def submit(self, page: str, **form: str) -> int:
        if not self.csrf:
            match = re.search(r'name="csrf_token" value="([^"]+)"', self.client.get(page).text)
            assert match is not None, page
            self.csrf = match[1]
        return self.client.post(page, data={**form, "csrf_token": self.csrf}).status_code

    def forget_cookies(self) -> None:
        self.client.cookies.clear()
        self.csrf = ""

    def close(self) -> None:
        self.client.close()


def abuse_the_website(node: TallyServer) -> None:
    """What the website's alerts are for: an account's password guessed 5 times, then
    more sign-ins refused by the throttle (no hash: cheap), SIGN_INS in all (over the
    alert's 50); RESETS reset emails asked for, of which the mail limit lets 4 through
    (the sign-up's was the 5th of the hour) and refuses the rest (over the alert's 20),
    and the 5 let through fail, the SMTP server being unreachable (over the alert's 2)."""
    site = Website(node)
    try:
        assert site.submit("/signup", email="ann@example.com", password=STRONG) in (200, 303)
        site.forget_cookies()  # signed out
        for attempt in range(SIGN_INS):
            status = site.submit("/login", email="ann@example.com", password="not it")
            assert status == (401 if attempt < 5 else 429)
        for _ in range(RESETS):
            assert site.submit("/forgot", email="ann@example.com") == 303  # Post/Redirect/Get
    finally:
        site.close()


def website_counts(prom: Prometheus, within: float = 10.0) -> dict[tuple[str, str], float]:
    """Sign-ins and emails by result, summed over the nodes, once they are ABUSED's (or
    after `within` s: emails may be sent off the request, and Prometheus scrapes every
    second)."""
    query = 'sum by (__name__, result) ({__name__=~"tally_signins_total|tally_mails_total"})'
    deadline = time.monotonic() + within
    while True:
        counts = {
            (s["metric"]["__name__"], s["metric"]["result"]): float(s["value"][1])
            for s in prom.query(query)
        }
        if counts == ABUSED or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def kill(node: TallyServer) -> None:
    if node.running:
        node.kill()


def metrics_env(port: int, **extra: str) -> dict[str, str]:
    return {"TALLY_METRICS_ADDRESS": f"{HOST}:{port}", **extra}


@pytest.fixture
def cleanup() -> Iterator[contextlib.ExitStack]:
    """Callbacks run at teardown, last added first (servers, proxies, Prometheus)."""
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.mark.timeout(900)  # the first may install prometheus (apt-get) first
def test_sqlite_queries_return_data_and_the_website_alerts_fire(
    prometheus_binaries: tuple[str, str], tmp_path: Path, cleanup: contextlib.ExitStack
) -> None:
    """One node on SQLite under load: every expression of the rules and the dashboard
    returns data (but Redis's) and no alert of a fault fires; then the website is abused
    (`abuse_the_website`) and TallySignInRefusals, TallyMailsFailing and TallyMailBurst
    fire."""
    metrics = free_port()
    (tmp_path / "prometheus").mkdir()
    prom = Prometheus(
        tmp_path / "prometheus",
        [f"{HOST}:{metrics}"],
        shrunk_rules(tmp_path / "rules.yml"),
        free_port(),
    )
    cleanup.callback(prom.close)
    prom.launch()  # it starts while the server does
    (tmp_path / "node").mkdir()
    smtp = {"TALLY_SMTP_HOST": HOST, "TALLY_SMTP_PORT": str(free_port())}  # nobody there
    smtp["TALLY_PUBLIC_URL"] = "http://tally.test"  # mailed links start with it
    node = TallyServer(
        tmp_path / "node",
        args=["--no-bootstrap"],
        env=metrics_env(metrics, TALLY_SMTP_SECURITY="none", **smtp),
    )
    cleanup.callback(node.close)
    node.start()
    cli = TallyCli(node.database_url)
    cli.workspace("ws")
    load = Load([node], cli.token("ws", "write"))
    cleanup.callback(load.stop)
    prom.wait_ready()
    prom.wait_targets_up(1)
    time.sleep(2.5)  # a few scrapes: rate() and deriv() need two samples in range
    missing = without_data(prom, REDIS_ONLY)
    # only a fault makes 5xx: the error ratio's metric is there, with its status label
    assert [e for e in missing if 'status=~"5.."' not in e] == [], prom.output()
    assert prom.series(f'tally_http_requests_total{{job="{JOB}",status="200"}}')
    assert not {name for name, _ in prom.firing()} & {*FAULT_ALERTS, *WEBSITE_ALERTS}

    abuse_the_website(node)
    wanted = {(name, "") for name in WEBSITE_ALERTS}
    firing, took = wait_for(prom, wanted, FIRE_WITHIN)
    assert wanted <= firing, (firing, prom.output())
    print(f"seconds from the abuse to the alert firing: {took}")
    assert website_counts(prom) == ABUSED


@pytest.mark.timeout(900)  # (this one too, when run alone)
def test_postgres_redis_faults_fire_their_alerts(
    prometheus_binaries: tuple[str, str],
    tmp_path: Path,
    postgres_url: str,
    cleanup: contextlib.ExitStack,
) -> None:
    """Two nodes on PostgreSQL + Redis under load (one buffered, one in commit mode):
    the website abused, its alerts fire as on SQLite (the throttle and the mail limit in
    Redis); Redis cut, TallyRedisLost fires for both; then the database cut and the commit-mode
    node killed: TallyDatabaseUnreachable and TallyGroupCommitFailing (the buffered
    node's retries) fire for the other, TallyHighErrorRate for the job, TallyNodeDown for
    the killed one; and every expression returns data (but the SQLite disk's)."""
    require_redis()
    pg = ProxyThread(postgres_url, 5432)
    cleanup.callback(pg.close)
    redis = ProxyThread(REDIS_URL, 6379)
    cleanup.callback(redis.close)
    target = urlsplit(postgres_url)
    proxied = postgres_url.replace(target.netloc, f"{target.username}@{HOST}:{pg.port}")
    ports = [free_port(), free_port()]
    (tmp_path / "prometheus").mkdir()
    prom = Prometheus(
        tmp_path / "prometheus",
        [f"{HOST}:{port}" for port in ports],
        shrunk_rules(tmp_path / "rules.yml"),
        free_port(),
    )
    cleanup.callback(prom.close)
    prom.launch()  # it starts while the servers do
    cli = TallyCli(postgres_url)
    cli.workspace("ws")  # migrates the schema before the nodes race to it
    token = cli.token("ws", "write")
    env = {
        "TALLY_REDIS_URL": f"redis://{HOST}:{redis.port}/0",
        "TALLY_REDIS_PREFIX": f"tally-test-{uuid.uuid4().hex[:12]}:",
        "TALLY_SMTP_HOST": HOST,
        "TALLY_SMTP_PORT": str(free_port()),  # nobody there
        "TALLY_SMTP_SECURITY": "none",
        "TALLY_PUBLIC_URL": "http://tally.test",
    }
    nodes = []
    for i, port in enumerate(ports):
        (tmp_path / f"node-{i}").mkdir()
        node = TallyServer(
            tmp_path / f"node-{i}",
            database_url=proxied,
            durability=("buffered", "commit")[i],  # a buffered node retries its commits
            args=["--no-bootstrap"],
            env=metrics_env(port, TALLY_FLUSH_INTERVAL="5", **env),
        )
        cleanup.callback(node.close)
        cleanup.callback(kill, node)  # its stop is not under test (nor its database there)
        nodes.append(node.start())
    load = Load(nodes, token)
    cleanup.callback(load.stop)
    prom.wait_ready()
    prom.wait_targets_up(2)
    a, b = (f"{HOST}:{port}" for port in ports)

    abuse_the_website(nodes[0])  # the throttle and the mail limit in Redis
    # every email sent or refused (they may be sent off the request) before Redis goes
    assert website_counts(prom) == ABUSED
    redis.cut()
    lost = {("TallyRedisLost", a), ("TallyRedisLost", b)}
    lost_and_abused = lost | {(name, "") for name in WEBSITE_ALERTS}
    firing, redis_took = wait_for(prom, lost_and_abused, FIRE_WITHIN)
    assert lost_and_abused <= firing, (firing, prom.output())

    # a change the buffered node holds when the database goes: its commit will fail
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        bearer = {"Authorization": f"Bearer {token}"}
        assert client.get(f"{nodes[0].base_url}/v2/ws/held/up", headers=bearer).status_code == 200
    pg.cut()
    nodes[1].kill()  # a node lost as a crash loses it (a graceful stop would flush first)
    faults = {
        ("TallyDatabaseUnreachable", a),
        ("TallyGroupCommitFailing", a),
        ("TallyHighErrorRate", ""),
        ("TallyNodeDown", b),
    }
    firing, database_took = wait_for(prom, faults, FIRE_WITHIN)
    assert faults <= firing, (firing, prom.output(), nodes[0].output())
    took = redis_took | database_took
    print(f"seconds from its cause (abuse, Redis cut, database cut) to each alert: {took}")
    print(f"firing then: {sorted(firing)}")
    # every expression has data now, the error ratio's included (the faults made 503s)
    assert without_data(prom, SQLITE_ONLY) == [], prom.output()
