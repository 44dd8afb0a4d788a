"""Scale-out: NODES `tally serve` nodes on one PostgreSQL and one Redis, behind nginx.

`tools.cluster.Cluster` runs the nodes (`tally serve --durability commit --redis ...`,
TALLY_TRUSTED_PROXIES=127.0.0.1, the rate limiter on but never rejecting, so the Redis
limiter's cost is measured) behind Debian's nginx, on free ports of 127.0.0.1, with a
PostgreSQL schema and a Redis key prefix of this run's own: both are removed at the end,
also on failure. The workspace, the Write token and the hot and drain counters come from
the CLI before the nodes start; the SPREAD numbered counters are inserted in one statement
(10,000 CLI calls would take minutes). Two loads of `up` with the Write token through
nginx, each with the drain phase of every counting load: one hot counter, then SPREAD
counters in turn (bench/lua/roundrobin.lua); after the nodes stopped, each load's
counters must hold in the database the 200s wrk saw for them. Each node's /metrics,
read before and after each load, tell how many ups and counters each of its PostgreSQL
transactions (group commits) carried, and how long they took.

The ceiling is bench/hello.py run the same way: NODES nodes behind the same kind of nginx
(a second Cluster), measured before and after the Tally cluster's load; the ratio is to
the mean of the two, as for the single-node scenarios.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

from bench import fixtures, procstat
from bench.progress import progress
from bench.scenarios import (
    DRAIN,
    HOT,
    METRICS_TOKEN,
    NO_LIMIT,
    RANDOM_PATH,
    SPREAD,
    CountCheck,
    Measurement,
    Run,
    Scenario,
    Target,
    measure,
)
from bench.servers import HOST, ROOT, free_port_block
from bench.wrk import Load
from tools.cluster import Cluster, tally_command

NODES = 2
NGINX_WORKERS = 1  # tools.cluster's default
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SCALEOUT = Scenario(
    "scaleout",
    f"up, one hot counter, Write token, commit: {NODES} nodes on PostgreSQL + Redis behind nginx",
    "hot",
    f"{HOT}/up",
    auth=True,
    counted="name = 'hot'",
    target=Target(0.5),
)
# the same cluster after the hot load; `counted` is a PostgreSQL condition here
SCALEOUT_SPREAD = Scenario(
    "scaleout-10k",
    f"up, Write token, commit, {SPREAD:,} counters in turn: {NODES} nodes on PostgreSQL + "
    "Redis behind nginx",
    "roundrobin",
    RANDOM_PATH,
    count=SPREAD,
    auth=True,
    counted="name ~ '^c[0-9]+$'",
)
# measured on the same cluster after the `up` load: the batched reads (no target)
SCALEOUT_GET = Scenario(
    "scaleout-get",
    f"get, one hot counter, Write token: {NODES} nodes on PostgreSQL + Redis behind nginx",
    "hot",
    HOT,
    auth=True,
)
CEILING_TITLE = f"ceiling: {NODES} hello ASGI nodes behind nginx"
# scaleout-10k's warm-up, in the run's warm-ups: every node must have looked up each of
# the SPREAD counters once (nginx sends a counter to either node, so that takes several
# passes) before the run measures the steady state, not the nodes learning the counters
SPREAD_WARMUP = 4
COMMITTED_TIMEOUT = 10.0  # seconds the nodes get to commit what they hold after a load
STOP_TIMEOUT = 30.0  # seconds a node gets to stop after SIGTERM


class ServiceError(RuntimeError):
    """PostgreSQL or Redis is not there."""


@dataclass(frozen=True)
class Services:
    postgres: str  # server versions
    redis: str


@dataclass
class NodeCommits:
    """One node's group commits over one load (warm-up and run), from its /metrics
    before and after it, once the node held no uncommitted change."""

    batches: int  # tally_batches_committed_total: transactions
    changes: int  # tally_changes_committed_total: one per counter per transaction
    requests: int  # tally_batch_requests_sum: the ups that waited for them
    commit_s: float  # tally_commit_duration_seconds_sum: Store.apply, round trip included

    @property
    def ups_per_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0

    @property
    def changes_per_batch(self) -> float:
        return self.changes / self.batches if self.batches else 0.0

    @property
    def commit_ms(self) -> float:
        """The mean time of one transaction, seen from the node."""
        return self.commit_s / self.batches * 1000 if self.batches else 0.0


@dataclass
class GroupCommit:
    """How the nodes committed one load: each node's transactions, and whether the Redis
    limiter was used all along."""

    nodes: list[NodeCommits]
    failed: int  # tally_batches_failed_total, over the nodes
    # tally_ratelimit_redis_fallback(s_total) are there only with the Redis limiter
    redis_limiter: bool
    redis_fallbacks: int  # times a node fell back to its own limiter

    @property
    def batches(self) -> int:
        return sum(n.batches for n in self.nodes)

    @property
    def ups(self) -> int:
        return sum(n.requests for n in self.nodes)

    @property
    def ups_per_batch(self) -> float:
        return self.ups / self.batches if self.batches else 0.0

    @property
    def changes_per_batch(self) -> float:
        return sum(n.changes for n in self.nodes) / self.batches if self.batches else 0.0


@dataclass
class ScaleoutResult:
    nodes: int
    load: Measurement  # one hot counter
    spread: Measurement  # SPREAD counters in turn, after `load`
    reads: Measurement  # `get` on the same cluster, after `spread`
    ceilings: list[Measurement]  # the ceiling cluster: before and after the loads
    group_commit: GroupCommit  # of `load`
    spread_commit: GroupCommit  # of `spread`
    postgres: str
    redis: str

    @property
    def ceiling_rps(self) -> float:
        return sum(c.rps for c in self.ceilings) / len(self.ceilings)


def check_services() -> Services:
    """PostgreSQL's and Redis's versions; fails at once if either does not answer."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        raise ServiceError(
            f"scaleout needs PostgreSQL at {POSTGRES_URL} (BENCH_POSTGRES_URL): "
            f"{' '.join(str(exc).split())}"
        ) from exc
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=3, socket_connect_timeout=3)
    try:
        info = client.info("server")
    except redis.RedisError as exc:
        raise ServiceError(f"scaleout needs Redis at {REDIS_URL} (BENCH_REDIS_URL): {exc}") from exc
    finally:
        client.close()
    return Services(str(row[0]) if row else "?", str(info.get("redis_version", "?")))


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def node_env(**settings: str) -> dict[str, str]:
    """For Cluster.start_nodes (which adds this environment): no TALLY_* setting of ours
    (an empty one is unset), plus `settings`."""
    unset = {k: "" for k in os.environ if k.startswith("TALLY_")}
    return {**unset, "PYTHONUNBUFFERED": "1", **settings}


def hello_command() -> list[str]:
    return [sys.executable, "-m", "bench.hello", "--host", HOST]  # Cluster adds --port


def run_scaleout(run: Run, services: Services) -> ScaleoutResult:
    """The ceiling cluster's first load, the Tally cluster's loads and counts, the ceiling
    cluster's second load; then everything is stopped and removed."""
    tag = secrets.token_hex(4)
    schema = f"tally_bench_{tag}"
    prefix = f"tally-bench-{tag}:"
    database = with_query(POSTGRES_URL, schema=schema)
    with contextlib.ExitStack() as cleanup:  # undone last first, also on failure
        cleanup.callback(_quietly, f"drop schema {schema}", lambda: drop_schema(schema))
        cleanup.callback(_quietly, f"delete Redis keys {prefix}*", lambda: delete_keys(prefix))
        ceiling = Cluster(
            run.logs / "scaleout-ceiling",
            port=free_port_block(NODES + 1),
            nodes=NODES,
            health_path="/",
            nginx_workers=NGINX_WORKERS,
        )
        cleanup.callback(stop, ceiling)
        progress(f"scaleout: {NODES} ceiling nodes behind nginx on port {ceiling.port}")
        ceiling.start_nodes(hello_command(), node_env(PYTHONPATH=str(ROOT)))
        ceiling.start_balancer()
        hello = Load(script="hot", path="/")
        first = measure_cluster(
            run, ceiling, "scaleout-ceiling-0", CEILING_TITLE, hello, warmup=True
        )

        progress(f"scaleout: workspace, Write token, counters in PostgreSQL schema {schema}")
        fixtures.create_workspace(database)  # migrates the schema before the nodes start
        token = fixtures.create_token(database, "write")
        for name in ("hot", DRAIN):
            fixtures.create_counter(database, name)
        insert_counters(schema, fixtures.numbered("c", SPREAD))
        started = time.monotonic()
        port = free_port_block(NODES + 1)
        tally = Cluster(run.logs / "scaleout", port, NODES, nginx_workers=NGINX_WORKERS)
        cleanup.callback(stop, tally)
        progress(f"scaleout: {NODES} Tally nodes behind nginx on port {tally.port}")
        env = node_env(
            TALLY_RATE_LIMIT=NO_LIMIT,
            TALLY_METRICS_TOKEN=METRICS_TOKEN,
            TALLY_TRUSTED_PROXIES="127.0.0.1",
            TALLY_REDIS_PREFIX=prefix,
        )
        tally.start_nodes(tally_command(database, REDIS_URL, SCALEOUT.durability), env)
        tally.start_balancer()
        m, group = measure_ups(run, tally, SCALEOUT, token)
        warm = dataclasses.replace(run, warmup_s=run.warmup_s * SPREAD_WARMUP)
        spread, spread_group = measure_ups(warm, tally, SCALEOUT_SPREAD, token)
        get = SCALEOUT_GET.load(token)
        reads = measure_cluster(run, tally, SCALEOUT_GET.name, SCALEOUT_GET.title, get, warmup=True)
        codes = stop(tally)
        m.wall_s = time.monotonic() - started
        m.exit_code = next((c for c in codes if c != 0), 0)
        if m.exit_code != 0:
            m.notes.append(f"node exit codes after SIGTERM: {codes} (see their logs)")
        for scenario, measured in ((SCALEOUT, m), (SCALEOUT_SPREAD, spread)):
            assert scenario.counted is not None
            measured.check = CountCheck(measured.seen_200, sum_up(schema, scenario.counted))
            verdict = "exact" if measured.check.exact else "NOT exact"
            progress(
                f"{scenario.name}: {verdict}: {measured.check.seen_200:,} 200s seen, "
                f"{measured.check.in_database:,} counted in the database"
            )

        second = measure_cluster(
            run, ceiling, "scaleout-ceiling-1", CEILING_TITLE, hello, warmup=False
        )
    result = ScaleoutResult(
        NODES,
        m,
        spread,
        reads,
        [first, second],
        group,
        spread_group,
        services.postgres,
        services.redis,
    )
    for c in result.ceilings:
        c.judge(result.ceiling_rps, None)
    m.judge(result.ceiling_rps, SCALEOUT.target)
    spread.judge(result.ceiling_rps, SCALEOUT_SPREAD.target)
    reads.judge(result.ceiling_rps, None)
    for measured in (m, spread):
        progress(
            f"{measured.name}: {measured.ratio or 0:.2f} x the ceiling of "
            f"{result.ceiling_rps:,.0f} req/s"
        )
    return result


def measure_ups(
    run: Run, cluster: Cluster, scenario: Scenario, token: str
) -> tuple[Measurement, GroupCommit]:
    """One load of `up` through the cluster, and how its nodes committed it: each node's
    /metrics before and after, both once it held no uncommitted change."""
    before = committed_metrics(cluster)
    m = measure_cluster(
        run, cluster, scenario.name, scenario.title, scenario.load(token), warmup=True
    )
    after = committed_metrics(cluster)

    def delta(i: int, key: str) -> float:
        return after[i].get(key, 0.0) - before[i].get(key, 0.0)

    nodes = [
        NodeCommits(
            batches=int(delta(i, "tally_batches_committed_total")),
            changes=int(delta(i, "tally_changes_committed_total")),
            requests=int(delta(i, "tally_batch_requests_sum")),
            commit_s=delta(i, "tally_commit_duration_seconds_sum"),
        )
        for i in range(cluster.nodes)
    ]
    group = GroupCommit(
        nodes=nodes,
        failed=int(sum(delta(i, "tally_batches_failed_total") for i in range(cluster.nodes))),
        redis_limiter=all("tally_ratelimit_redis_fallbacks_total" in n for n in after),
        redis_fallbacks=int(
            sum(delta(i, "tally_ratelimit_redis_fallbacks_total") for i in range(cluster.nodes))
        ),
    )
    each = "; ".join(
        f"node {i}: {n.ups_per_batch:.1f} ups, {n.changes_per_batch:.1f} counters, "
        f"{n.commit_ms:.2f} ms"
        for i, n in enumerate(nodes)
    )
    progress(
        f"{scenario.name}: {group.ups:,} ups in {group.batches:,} transactions: "
        f"{group.ups_per_batch:.1f} ups per transaction ({each})"
    )
    if not group.redis_limiter or group.redis_fallbacks:
        m.notes.append(
            "the nodes did not limit through Redis all along (see their /metrics): "
            f"Redis limiter {group.redis_limiter}, fallbacks {group.redis_fallbacks}"
        )
    return m, group


def measure_cluster(
    run: Run, cluster: Cluster, name: str, title: str, load: Load, *, warmup: bool
) -> Measurement:
    """`measure` through the cluster's nginx: the server is its nodes' granian workers,
    and the CPU of every process is kept (nodes, nginx, services, wrk, other)."""
    nodes = [p.pid for p in cluster.procs]
    workers = [(procstat.children(pid) or [pid])[0] for pid in nodes]
    labels = {pid: "nodes" for node in nodes for pid in procstat.family(node)}
    nginx = int((cluster.dir / "nginx.pid").read_text().strip())
    labels.update((pid, "nginx") for pid in procstat.family(nginx))
    labels[os.getpid()] = "bench"
    url = f"http://{HOST}:{cluster.port}"
    return measure(run, url, workers, name, title, load, 200, warmup=warmup, labels=labels)


def node_metrics(cluster: Cluster) -> list[dict[str, float]]:
    """Each node's GET /metrics (asked of the node, not through nginx)."""
    out = []
    for i in range(cluster.nodes):
        url = f"http://{HOST}:{cluster.node_port(i)}/metrics"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read().decode()
        values = (ln.split() for ln in text.splitlines() if ln and not ln.startswith("#"))
        out.append({v[0]: float(v[1]) for v in values if len(v) == 2})
    return out


def committed_metrics(cluster: Cluster) -> list[dict[str, float]]:
    """Each node's metrics, once none holds an uncommitted change (requests cut off when
    wrk stopped may still be in a transaction)."""
    deadline = time.monotonic() + COMMITTED_TIMEOUT
    while True:
        nodes = node_metrics(cluster)
        if all(n.get("tally_pending_changes", 0) == 0 for n in nodes):
            return nodes
        if time.monotonic() > deadline:
            progress(f"scaleout: changes still pending after {COMMITTED_TIMEOUT:g} s")
            return nodes
        time.sleep(0.05)


def stop(cluster: Cluster) -> list[int | None]:
    """Stop the nodes (SIGTERM: they commit what they hold) and nginx; the nodes' exit
    codes. A node's worker must not outlive it: SIGKILL to each node's process group after.

    The nodes are stopped and waited for here, before Cluster.stop(): it polls their pids
    with kill(pid, 0), which a child of this process passes once it has exited (a zombie
    until waited for), so it would wait its full timeout, then SIGKILL, every time."""
    procs = list(cluster.procs)
    if not procs:
        return []
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            progress(f"scaleout: node {proc.pid} did not stop in {STOP_TIMEOUT:g} s: SIGKILL")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # each node leads its own process group
        proc.wait()
    for pidfile in cluster.dir.glob("node*.pid"):
        pidfile.unlink(missing_ok=True)
    cluster.stop()  # nginx; the nodes are gone already
    return [proc.returncode for proc in procs]


def insert_counters(schema: str, names: Iterable[str]) -> None:
    """Public, empty counters of these names in WORKSPACE, in one statement."""
    query = sql.SQL(
        "INSERT INTO {schema}.counters (workspace_id, name, created_at, updated_at) "
        "SELECT w.id, n, %(now)s, %(now)s FROM {schema}.workspaces w, unnest(%(names)s::text[]) n "
        "WHERE w.slug = %(slug)s"
    ).format(schema=sql.Identifier(schema))
    params = {"now": time.time(), "names": list(names), "slug": fixtures.WORKSPACE}
    with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
        conn.execute(query, params)


def sum_up(schema: str, where: str) -> int:
    """Sum of up_count over the counters of `schema` matching `where` (an SQL condition)."""
    query = sql.SQL("SELECT COALESCE(SUM(up_count), 0) FROM {}.counters WHERE {}").format(
        sql.Identifier(schema), sql.SQL(where)
    )
    with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
        try:
            row = conn.execute(query).fetchone()
        except psycopg.errors.UndefinedTable as exc:
            raise ServiceError(
                f"the schema {schema} is gone: something else dropped it during the run"
            ) from exc
    return int(row[0]) if row else 0


def drop_schema(schema: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def delete_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
    finally:
        client.close()
    progress(f"scaleout: deleted {len(keys):,} Redis keys {prefix}*")


def _quietly(what: str, action: Callable[[], None]) -> None:
    """Clean-up: a failure is told, not raised (it must not hide the run's own error, nor
    stop the other clean-ups)."""
    try:
        action()
    except Exception as exc:
        progress(f"scaleout: could not {what}: {exc}")
