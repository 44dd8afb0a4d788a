"""The measured scenarios: what each sends, to which server, and how it is judged.

Every scenario runs against a fresh server on a fresh copy of its database: a warm-up,
then the measured run, both bounded by wrk's duration. The rate limiter stays on in every
scenario (NO_LIMIT admits everything) so that its cost is part of what is measured,
except where the limit is what is measured.

The ceiling server runs through the whole benchmark, and a ceiling load runs before the
first scenario and after each one: a scenario is judged against the mean of the two
ceiling runs around it, so a machine whose speed drifts (a shared one) skews the ratios
as little as it can.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import fixtures, procstat
from bench.progress import progress
from bench.servers import Server, naive_server, tally_server
from bench.wrk import CONNECTIONS, Load, run_wrk

NO_LIMIT = "1000000000/60s"
METRICS_TOKEN = "bench-metrics-token-0123456789"
HOT = f"/v2/{fixtures.WORKSPACE}/hot"
HISTORY = "hist"
UNIQUE = "unique"  # a counter with a unique-visitor window of 24 h
HISTORY_DAYS = 90
RANDOM_PATH = f"/v2/{fixtures.WORKSPACE}/c{{}}/up"  # bench/lua/random.lua fills in {}
RANDOM_NAMES = "name GLOB 'c[0-9]*'"
NEW_PATH = f"/v2/{fixtures.WORKSPACE}/n{{}}/up"  # bench/lua/fresh.lua fills in {}
NEW_NAMES = "name GLOB 'n*-*'"
# up-new keeps both defences of creation on, at bounds its load does not reach, so that
# their checks are part of what it measures (the other scenarios run without them)
NEW_LIMITS = (("TALLY_CREATE_RATE_LIMIT", NO_LIMIT), ("TALLY_COUNTER_QUOTA", "100000000"))
FEW = 4  # connections of the few-clients pair (up-commit-c4, up-buffered-c4)
SPREAD = 10_000  # up-10k and naive: c0 .. c9999, each in turn (bench/lua/roundrobin.lua)
NAIVE_GAIN = 50.0  # up-10k against naive, both as ratios to their ceilings (issue 10)
# the drain phase of counting loads (see bench/lua/common.lua)
DRAIN = "drain"
DRAIN_PATH = f"/v2/{fixtures.WORKSPACE}/{DRAIN}/up"
DRAIN_MARK = f'"name":"{DRAIN}"'
# command names of processes reported by name in Measurement.cpu_by_process
SERVICES = {"postgres": "postgres", "redis-server": "redis"}


@dataclass(frozen=True)
class Target:
    """The goal a scenario is held to (from the performance issue)."""

    min_ratio: float
    max_p99_ms: float | None = None

    def describe(self) -> str:
        parts = [f">= {self.min_ratio:g} x ceiling"]
        if self.max_p99_ms is not None:
            parts.append(f"p99 <= {self.max_p99_ms:g} ms")
        return ", ".join(parts)

    def met(self, m: Measurement) -> bool:
        return (
            m.ratio is not None
            and m.ratio >= self.min_ratio
            and (self.max_p99_ms is None or m.p99_ms <= self.max_p99_ms)
        )


@dataclass(frozen=True)
class Scenario:
    name: str  # as given to --only
    title: str
    script: str  # of bench/lua/
    path: str
    count: int = 0  # random.lua: names out of this many
    auth: bool = False  # send the Write token
    durability: str = "commit"
    rate_limit: str = NO_LIMIT
    expect: int = 200  # the status whose rate is the scenario's req/s
    # SQL condition on `counters`: the counters whose up_count must add up to the 200s
    # wrk saw (the load then ends with a drain phase)
    counted: str | None = None
    target: Target | None = None
    env: tuple[tuple[str, str], ...] = ()  # TALLY_* settings of the server beyond these
    # the scenario this one differs from by `env` only: the report gives the ratio of the two
    baseline: str | None = None
    max_cost: float | None = None  # the throughput it may lose against the baseline
    min_gain: float | None = None  # the least multiple of the baseline's throughput
    server: str = "tally"  # or "naive": bench/naive.py on the same database
    connections: int = CONNECTIONS  # wrk's open connections (fewer: clients that wait)

    def load(self, token: str | None) -> Load:
        drain = self.counted is not None
        return Load(
            script=self.script,
            path=self.path,
            count=self.count,
            token=token if self.auth else None,
            drain_path=DRAIN_PATH if drain else None,
            drain_mark=DRAIN_MARK if drain else None,
            connections=self.connections,
        )


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "up-commit",
        "up, one hot counter, Write token, commit",
        "hot",
        f"{HOT}/up",
        auth=True,
        counted="name = 'hot'",
        target=Target(0.8, max_p99_ms=10.0),
    ),
    Scenario(
        "up-metrics",
        "up, one hot counter, Write token, commit, metrics on",
        "hot",
        f"{HOT}/up",
        auth=True,
        counted="name = 'hot'",
        env=(("TALLY_METRICS_TOKEN", METRICS_TOKEN),),
        baseline="up-commit",
        max_cost=0.05,  # issue 11: metrics cost at most 5 %
        target=Target(0.8, max_p99_ms=10.0),
    ),
    Scenario(
        "up-buffered",
        "up, one hot counter, Write token, buffered",
        "hot",
        f"{HOT}/up",
        auth=True,
        durability="buffered",
        counted="name = 'hot'",
        target=Target(0.9),
        baseline="up-commit",
    ),
    # The same two with FEW connections (docs/performance.md, "Buffered against
    # commit"): at 64 connections the server is CPU-bound and the group commit hides the
    # fsync, so buffered saves little; with clients that wait for each answer the
    # commit's wait is the bound, and buffered is what lifts it.
    Scenario(
        "up-commit-c4",
        f"up, one hot counter, Write token, commit, {FEW} connections",
        "hot",
        f"{HOT}/up",
        auth=True,
        counted="name = 'hot'",
        connections=FEW,
    ),
    Scenario(
        "up-buffered-c4",
        f"up, one hot counter, Write token, buffered, {FEW} connections",
        "hot",
        f"{HOT}/up",
        auth=True,
        durability="buffered",
        counted="name = 'hot'",
        connections=FEW,
        baseline="up-commit-c4",
        min_gain=1.2,
    ),
    Scenario(
        "naive",
        f"naive reference (bench/naive.py): up, Write token, {SPREAD:,} counters in turn",
        "roundrobin",
        RANDOM_PATH,
        count=SPREAD,
        auth=True,
        # no count check: wrk gives up on a request after 2 s, and the naive server,
        # which takes longer at times, still counts it
        server="naive",
    ),
    Scenario(
        "up-10k",
        f"up, Write token, commit, {SPREAD:,} counters in turn",
        "roundrobin",
        RANDOM_PATH,
        count=SPREAD,
        auth=True,
        counted=RANDOM_NAMES,
        target=Target(0.6, max_p99_ms=10.0),
        baseline="naive",
        min_gain=NAIVE_GAIN,
    ),
    Scenario(
        "up-new",
        "up, Write token, commit, a new name every request (each up creates its counter)",
        "fresh",
        NEW_PATH,
        auth=True,
        counted=NEW_NAMES,
        env=NEW_LIMITS,
        baseline="up-10k",
        min_gain=0.5,  # issue 21: at least half of up over existing counters
    ),
    Scenario(
        "up-100k",
        "up, anonymous, random of 100,000 public counters, commit",
        "random",
        RANDOM_PATH,
        count=100_000,
        counted=RANDOM_NAMES,
    ),
    Scenario(
        "get",
        f"get, one counter with {HISTORY_DAYS} days of history",
        "hot",
        f"/v2/{fixtures.WORKSPACE}/{HISTORY}",
    ),
    Scenario(
        "badge",
        f"badge.svg, the same counter as get ({HISTORY_DAYS} days of history)",
        "hot",
        f"/v2/{fixtures.WORKSPACE}/{HISTORY}/badge.svg",
    ),
    Scenario(
        "badge-up",
        "badge.svg?count=up, one hot counter, anonymous, commit",
        "hot",
        f"{HOT}/badge.svg?count=up",
        counted="name = 'hot'",
    ),
    Scenario(
        "up-unique",
        "up, anonymous, one visitor on a counter with a 24 h unique window (not counted)",
        "hot",
        f"/v2/{fixtures.WORKSPACE}/{UNIQUE}/up",
    ),
    Scenario(
        "stats",
        f"stats, one counter with {HISTORY_DAYS} days of hourly buckets",
        "hot",
        f"/v2/{fixtures.WORKSPACE}/{HISTORY}/stats",
    ),
    Scenario(
        "limited",
        "up over the rate limit (10/60s), Write token: 429s per second",
        "hot",
        f"{HOT}/up",
        auth=True,
        rate_limit="10/60s",
        expect=429,
    ),
)


@dataclass(frozen=True)
class Run:
    """How every load of this run is made."""

    wrk: str
    warmup_s: int
    seconds: int
    logs: Path


@dataclass
class CountCheck:
    """The counted totals against the 200s wrk saw (warm-up and measured run)."""

    seen_200: int
    in_database: int

    @property
    def exact(self) -> bool:
        return self.seen_200 == self.in_database


@dataclass
class WorkerUsage:
    """One worker of a server with several (a node of `scaleout`), over a load."""

    pid: int
    cpu_cores: float  # its CPU time over the measured run / its duration
    rss_max_mb: float  # sampled every 0.5 s over warm-up and run
    rss_last_mb: float


@dataclass
class Measurement:
    name: str
    title: str
    expect: int
    rps: float  # responses of status `expect` per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    duration_s: float
    statuses: dict[int, int]
    unexpected: dict[int, int]  # responses of any other status
    socket_errors: dict[str, int]
    seen_200: int  # 200s of the counted phase, warm-up and measured run together
    # of the server's worker (of all its workers together, if several), sampled every 0.5 s
    # over warm-up and run
    rss_max_mb: float
    rss_last_mb: float
    cpu_cores: float  # the worker's (workers') CPU time over the measured run / its duration
    wall_s: float  # the whole scenario: start, warm-up, run, stop
    exit_code: int | None = None
    check: CountCheck | None = None
    ceiling_rps: float | None = None  # the mean of the ceiling runs before and after
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    notes: list[str] = field(default_factory=list)
    workers: list[WorkerUsage] = field(default_factory=list)  # each, if several
    # the CPU of every process of the machine over the measured run, in cores, by what it
    # is (the server's workers, postgres, wrk, ...); kept by some loads only
    cpu_by_process: dict[str, float] = field(default_factory=dict)

    def judge(self, ceiling_rps: float, target: Target | None) -> None:
        self.ceiling_rps = ceiling_rps
        self.ratio = self.rps / ceiling_rps if ceiling_rps else None
        if target is not None:
            self.target = target.describe()
            self.met = target.met(self)


def measure(
    run: Run,
    url: str,
    workers: Sequence[int],
    name: str,
    title: str,
    load: Load,
    expect: int,
    *,
    warmup: bool,
    labels: Mapping[int, str] | None = None,
) -> Measurement:
    """Load the server at `url`: a warm-up (if `warmup`), then the measured run. `workers`
    are the server's processes whose CPU and RSS are measured (summed if several). With
    `labels` (pid: label), the CPU of every process over the measured run is kept too, by
    label (else by command name for the services, see SERVICES, else "other")."""
    started = time.monotonic()
    progress(f"{name}: {title}")
    with contextlib.ExitStack() as stack:
        rss = [stack.enter_context(procstat.RssSampler(pid)) for pid in workers]
        warm = None
        if warmup:
            warm = run_wrk(run.wrk, url, load, run.warmup_s, run.logs / f"{name}.warmup")
        cpu_before = [procstat.cpu_seconds(pid) for pid in workers]
        snapshot = procstat.CpuSnapshot.take() if labels is not None else None
        main = run_wrk(run.wrk, url, load, run.seconds, run.logs / f"{name}.wrk")
        everything = procstat.CpuSnapshot.take() if snapshot is not None else None
        cpu = [procstat.cpu_seconds(pid) - b for pid, b in zip(workers, cpu_before, strict=True)]
    per_s = 1 / main.duration_s if main.duration_s else 0.0
    m = Measurement(
        name=name,
        title=title,
        expect=expect,
        rps=main.rate(expect),
        p50_ms=main.latency_ms["p50"],
        p90_ms=main.latency_ms["p90"],
        p99_ms=main.latency_ms["p99"],
        max_ms=main.latency_ms["max"],
        requests=main.requests,
        duration_s=main.duration_s,
        statuses=main.statuses,
        unexpected=main.other_statuses(expect),
        socket_errors=main.socket_errors(),
        seen_200=main.counted_200 + (warm.counted_200 if warm else 0),
        rss_max_mb=sum(r.max_mb for r in rss),
        rss_last_mb=sum(r.last_mb for r in rss),
        cpu_cores=sum(cpu) * per_s,
        wall_s=time.monotonic() - started,
    )
    if len(workers) > 1:
        m.workers = [
            WorkerUsage(pid, c * per_s, r.max_mb, r.last_mb)
            for pid, c, r in zip(workers, cpu, rss, strict=True)
        ]
    if snapshot is not None and everything is not None:
        assert labels is not None
        used = everything.used_since(snapshot, labels, SERVICES, reaped="wrk")
        m.cpu_by_process = {k: s * per_s for k, s in sorted(used.items(), key=lambda kv: -kv[1])}
    odd = {k: n for k, n in (warm.statuses if warm else {}).items() if k not in (200, expect)}
    if odd:
        m.notes.append(f"warm-up statuses other than {expect}: {odd}")
    progress(f"{name}: {m.rps:,.0f} req/s, p50 {m.p50_ms:.2f} ms, p99 {m.p99_ms:.2f} ms")
    return m


def run_ceiling(run: Run, server: Server, index: int) -> Measurement:
    """One ceiling load on the running ceiling server (warmed up by the first one)."""
    load = Load(script="hot", path="/")
    title = "ceiling: hello ASGI app"
    workers = [server.worker_pid()]
    name = f"ceiling-{index}"
    return measure(run, server.url, workers, name, title, load, 200, warmup=index == 0)


def run_scenario(run: Run, scenario: Scenario, db: Path, token: str | None) -> Measurement:
    """Measure `scenario` on a fresh server on `db`; for a counting scenario, compare the
    database's totals (read after the server stopped and committed everything) with the
    200s wrk saw."""
    started = time.monotonic()
    if scenario.server == "naive":
        server = naive_server(db, log_dir=run.logs, name=scenario.name)
    else:
        server = tally_server(
            db,
            durability=scenario.durability,
            rate_limit=scenario.rate_limit,
            log_dir=run.logs,
            name=scenario.name,
            env=dict(scenario.env),
        )
    with server:
        load = scenario.load(token)
        m = measure(
            run,
            server.url,
            [server.worker_pid()],
            scenario.name,
            scenario.title,
            load,
            scenario.expect,
            warmup=True,
        )
    m.exit_code = server.exit_code
    m.wall_s = time.monotonic() - started
    if server.exit_code != 0:
        m.notes.append(f"server exited with {server.exit_code} after SIGTERM (see its log)")
    if scenario.counted is not None:
        m.check = CountCheck(m.seen_200, fixtures.sum_up(db, scenario.counted))
        verdict = "exact" if m.check.exact else "NOT exact"
        progress(
            f"{scenario.name}: {verdict}: {m.check.seen_200:,} 200s seen, "
            f"{m.check.in_database:,} counted in the database"
        )
    return m


def compare_baselines(scenarios: Sequence[Scenario], measured: Sequence[Measurement]) -> None:
    """Note on each scenario with a baseline its throughput against the baseline's, both
    as ratios to their own ceilings (so the machine's drift between them cancels out)."""
    by_name = {m.name: m for m in measured}
    for scenario in scenarios:
        m = by_name.get(scenario.name)
        base = by_name.get(scenario.baseline or "")
        if m is None or base is None or not m.ratio or not base.ratio:
            continue
        relative = m.ratio / base.ratio
        verdict = ""
        if scenario.max_cost is not None:
            within = relative >= 1 - scenario.max_cost
            verdict = f"; at most {scenario.max_cost:.0%} less: {'yes' if within else 'NO'}"
        if scenario.min_gain is not None:
            within = relative >= scenario.min_gain
            verdict = f"; at least {scenario.min_gain:g} x: {'yes' if within else 'NO'}"
        m.notes.append(
            f"{relative:.3f} x {base.name} ({(relative - 1) * 100:+.1f} %), "
            f"p99 {m.p99_ms:.2f} ms against {base.p99_ms:.2f} ms{verdict}"
        )
        progress(f"{scenario.name}: {relative:.3f} x {base.name}{verdict}")


@dataclass(frozen=True)
class BaseDatabase:
    """The database every scenario but scale starts from (each on its own copy)."""

    path: Path
    token: str  # a Write token of the workspace
    insert_100k_s: float
    history_events: int


def prepare_base(work: Path) -> BaseDatabase:
    """Workspace and Write token (CLI), the counters hot, drain, hist, unique (with a
    24 h unique window) and c0 .. c99999 (bulk insert), and hist's history (Store
    API)."""
    db = work / "base.db"
    progress("preparing the database: workspace, token, 100,000 counters, history")
    workspace_id = fixtures.create_workspace(db)
    token = fixtures.create_token(db, "write")
    fixtures.bulk_insert(db, workspace_id, ["hot", DRAIN, HISTORY, UNIQUE])
    fixtures.cli(db, "counter", "unique", f"{fixtures.WORKSPACE}/{UNIQUE}", "24h")
    seconds = fixtures.bulk_insert(db, workspace_id, fixtures.numbered("c", 100_000))
    events = fixtures.seed_history(db, HISTORY, HISTORY_DAYS)
    progress(f"100,000 counters inserted in {seconds:.2f} s")
    return BaseDatabase(db, token, seconds, events)
