"""Soak: hold a real server at a share of its measured maximum, watch it for drift.

    python -m tools.soak --minutes 10            # the documented run (docs/durability.md)
    python -m tools.soak --minutes 1 --backend postgresql

The load is wrk's (bench/wrk.py: its threads, connections and timeout; the Lua script
bench/lua/soak.lua): 80 % `up` on one of `--counters` (1,000) counters at random, 15 %
reading one, 5 % its stats. The counters are created first (one `up` each). Then the
maximum: wrk sends the workload as fast as it is answered for `--probe` seconds. Then
`--share` (80 %) of that rate for `--minutes`, in consecutive wrk runs of `--window`
seconds: wrk has no fixed-rate mode, so each connection waits before each request (the
Lua `delay()` hook), the wait computed from the target rate and the connection count and
corrected after each window from the rate it gave, so that the rate holds near the
target (within ~10 %) whatever the latency. Each window gives its rate, errors (answers
but 200, and socket errors), p50 / p99 latency, and, sampled in its middle, the
server's memory (RSS of every process of its group: granian's main process and its
worker) and open file descriptors.

Every wrk run ends with bench's drain phase (bench/lua/common.lua): its last 0.5 s go to
the counter `drain`, so the requests cut off when wrk stops never touch the counters
checked. At the end the server's totals of the counters are read: their `up_count`s must
add up to the 200s wrk saw to `up` (and the creating `up`s), exactly.

The checks (exit status 1 if one fails): no answer but 200 and no socket error; every
request of each window's measured phase answered (which makes the 200s to `up` exactly
the `up`s wrk sent) and the counts exact; memory flat once warm: the mean RSS of the last
third of the windows at most 5 % (or 8 MB) above the mean of the middle third (the first
third fills the caches, e.g. the stats cache of every counter); file descriptors flat:
the last window's count at most 8 above the first's; p99 steady: after the first window,
no window's p99 above 3x the median of the windows' p99s (and 50 ms).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import wrk
from tools.chaos import POSTGRES, REDIS
from tools.node import HOST, TALLY, Node, clean_env

WORKSPACE = "ws"
DRAIN = "drain"  # the counter of the drain phase, never checked
ON_TARGET = 0.10  # a window's rate within this share of the target counts as held


@dataclass
class Sample:
    """One window of the soak (or the probe: `at` 0)."""

    at: float  # seconds since the soak began, at the window's end
    requests: int  # answers received, drain phase included
    rate: float  # answers per second
    errors: int  # answers but 200, and socket errors
    p50_ms: float
    p99_ms: float
    rss_mb: float
    fds: int
    delay_ms: float  # each connection's wait before each request
    ups: int  # `up`s of the measured phase, all answered 200 when `exact`
    exact: bool  # every request of the measured phase answered 200


@dataclass
class Report:
    backend: str = ""
    connections: int = wrk.CONNECTIONS
    max_rate: float = 0.0
    target_rate: float = 0.0
    requests: int = 0
    errors: int = 0
    created: int = 0  # the `up`s creating the counters
    up_200: int = 0  # 200s to `up` wrk saw (probe and windows)
    stored_up: int = 0  # the counters' up_count, read at the end
    probe: Sample | None = None
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def on_target(self) -> int:
        """Windows after the first whose rate is within ON_TARGET of the target."""
        low, high = (1 - ON_TARGET) * self.target_rate, (1 + ON_TARGET) * self.target_rate
        return sum(low <= s.rate <= high for s in self.samples[1:])


def group_pids(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of stat: the process group
            pids.append(int(stat.parent.name))
    return pids


def footprint(pgid: int) -> tuple[float, int]:
    """(RSS in MB, open file descriptors) of every process of the group."""
    rss_kb, fds = 0, 0
    for pid in group_pids(pgid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kb += int(line.split()[1])
            fds += len(list(Path(f"/proc/{pid}/fd").iterdir()))
        except OSError:
            continue
    return rss_kb / 1024, fds


class Watch:
    """The server's footprint in the middle of a window (taken by a thread), while wrk's
    connections are open."""

    def __init__(self, pgid: int, after: float) -> None:
        self.pgid = pgid
        self.taken = footprint(pgid)
        self._timer = threading.Timer(after, self._take)

    def _take(self) -> None:
        self.taken = footprint(self.pgid)

    def __enter__(self) -> Watch:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self._timer.join()


def workload(args: argparse.Namespace, delay_ms: float | None) -> wrk.Load:
    """The soak's load (bench/lua/soak.lua), paced by `delay_ms` (None: unpaced)."""
    base = f"/v2/{WORKSPACE}/c{{}}"
    settings = [("SOAK_GET_PATH", base), ("SOAK_STATS_PATH", f"{base}/stats")]
    if delay_ms is not None:
        settings.append(("SOAK_DELAY_MS", f"{delay_ms:.4f}"))
    return wrk.Load(
        script="soak",
        path=f"{base}/up",
        count=args.counters,
        token=args.token,
        drain_path=f"/v2/{WORKSPACE}/{DRAIN}/up",
        drain_mark=f'"name":"{DRAIN}"',
        settings=tuple(settings),
    )


def window(
    args: argparse.Namespace,
    node: Node,
    logs: Path,
    delay_ms: float | None,
    seconds: int,
    at: float,
) -> Sample:
    """One wrk run of `seconds`, as a Sample (`at`: its end, since the soak began)."""
    assert node.proc is not None
    name = f"window-{len(list(logs.glob('window-*')))}"
    with Watch(node.proc.pid, seconds / 2) as watch:
        result = wrk.run_wrk(
            args.wrk, f"http://{HOST}:{node.port}", workload(args, delay_ms), seconds, logs / name
        )
    rss, fds = watch.taken
    ups, reads = result.tallies.get("ups", 0), result.tallies.get("reads", 0)
    errors = sum(result.other_statuses(200).values()) + sum(result.socket_errors().values())
    # all answered 200 and as many 200s in the measured phase as requests built there
    exact = not errors and result.counted_200 == ups + reads
    return Sample(
        at=round(at, 1),
        requests=result.requests,
        rate=round(result.rps, 1),
        errors=errors,
        p50_ms=round(result.latency_ms["p50"], 2),
        p99_ms=round(result.latency_ms["p99"], 2),
        rss_mb=round(rss, 1),
        fds=fds,
        delay_ms=round(delay_ms or 0.0, 3),
        ups=ups,
        exact=exact,
    )


def request(conn: http.client.HTTPConnection, token: str, path: str) -> dict[str, object]:
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
    data = json.loads(body)["data"]
    assert isinstance(data, dict)
    return data


def create_counters(port: int, token: str, counters: int) -> int:
    """One `up` on each counter (so that every read finds it); the `up`s answered 200."""
    conn = http.client.HTTPConnection(HOST, port, timeout=20)
    try:
        for i in range(counters):
            request(conn, token, f"/v2/{WORKSPACE}/c{i}/up")
    finally:
        conn.close()
    return counters


def stored_up(port: int, token: str, counters: int) -> int:
    """The sum of the counters' up_count, as the server answers it."""
    conn = http.client.HTTPConnection(HOST, port, timeout=20)
    try:
        return sum(
            int(str(request(conn, token, f"/v2/{WORKSPACE}/c{i}")["up_count"]))
            for i in range(counters)
        )
    finally:
        conn.close()


def next_delay(delay_ms: float, rate: float, target: float, connections: int) -> float:
    """The wait per request that should give `target`: a connection's cycle is its wait
    plus the rest (latency, the client's own time), the rest estimated from the rate the
    last wait gave; half-way from the last wait to that, since the rest itself moves with
    the rate and the machine's other work (a full step overshoots)."""
    if rate <= 0:
        return delay_ms
    rest = max(0.0, connections / rate * 1000 - delay_ms)
    wanted = max(0.0, connections / target * 1000 - rest)
    return (delay_ms + wanted) / 2


def soak(args: argparse.Namespace, workdir: Path) -> Report:
    report = Report(backend=args.backend)
    args.wrk = wrk.ensure_wrk()
    logs = workdir / "wrk"
    logs.mkdir(exist_ok=True)
    node = setup(args, workdir)
    try:
        assert node.proc is not None
        report.created = create_counters(node.port, args.token, args.counters)
        probe = window(args, node, logs, None, args.probe, 0.0)
        report.probe = probe
        report.max_rate = probe.rate
        report.target_rate = probe.rate * args.share
        tally(report, probe)
        connections = report.connections
        # from the probe's cycle (latency and the client's time) at full speed, in full
        delay_ms = 2 * next_delay(0.0, probe.rate, report.target_rate, connections)
        windows = max(1, math.ceil(args.minutes * 60 / args.window))
        began = time.monotonic()
        for _ in range(windows):
            sample = window(
                args, node, logs, delay_ms, args.window, time.monotonic() - began + args.window
            )
            report.samples.append(sample)
            tally(report, sample)
            if not args.quiet:
                print(json.dumps(asdict(sample)), flush=True)
            delay_ms = next_delay(delay_ms, sample.rate, report.target_rate, connections)
        report.stored_up = stored_up(node.port, args.token, args.counters)
    finally:
        if node.running:
            node.signal(signal.SIGTERM)
        node.teardown()
    report.failures = judge(report)
    return report


def tally(report: Report, sample: Sample) -> None:
    report.requests += sample.requests
    report.errors += sample.errors
    report.up_200 += sample.ups


def judge(report: Report) -> list[str]:
    out = []
    if report.errors:
        out.append(f"{report.errors} errors")
    windows = ([report.probe] if report.probe else []) + report.samples
    unanswered = [s.at for s in windows if not s.exact and not s.errors]
    if unanswered:
        out.append(
            f"requests of the measured phase unanswered in the windows ending at {unanswered}"
        )
    if all(s.exact for s in windows) and report.stored_up != report.created + report.up_200:
        out.append(
            f"counts not exact: {report.stored_up} stored, {report.created} creating `up`s "
            f"and {report.up_200} 200s to `up` seen"
        )
    samples = report.samples
    if len(samples) < 3:
        return [*out, "too few samples to judge drift"]
    third = len(samples) // 3
    middle = statistics.mean(s.rss_mb for s in samples[third : 2 * third])
    final = statistics.mean(s.rss_mb for s in samples[-third:])
    if final > middle + max(0.05 * middle, 8.0):
        out.append(f"memory grew from {middle:.1f} MB to {final:.1f} MB once warm")
    if samples[-1].fds > samples[0].fds + 8:
        out.append(f"file descriptors grew from {samples[0].fds} to {samples[-1].fds}")
    warm = samples[1:]  # the first window fills the caches and settles the pacing
    median = statistics.median(s.p99_ms for s in warm)
    worst = max(s.p99_ms for s in warm)
    if worst > max(3 * median, 50.0):
        out.append(f"p99 not steady: a window at {worst} ms, median {median} ms")
    return out


class SoakNode(Node):
    schema = ""
    admin = ""

    def teardown(self) -> None:
        if self.schema:
            import psycopg  # only for the PostgreSQL backend

            with psycopg.connect(self.admin, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def setup(args: argparse.Namespace, workdir: Path) -> SoakNode:
    env = {"TALLY_RATE_LIMIT": "off"}
    schema = ""
    if args.backend == "sqlite":
        database = f"sqlite:///{workdir / 'soak.db'}"
    else:
        schema = f"tally_soak_{secrets.token_hex(6)}"
        database = f"{args.database}{'&' if '?' in args.database else '?'}schema={schema}"
        env |= {"TALLY_REDIS_URL": args.redis, "TALLY_REDIS_PREFIX": f"{schema}:"}

    def cli(*argv: str) -> str:
        return subprocess.run(
            [TALLY, *argv, "--database", database], capture_output=True, text=True,
            env=clean_env({}), check=True, timeout=60,
        ).stdout  # fmt: skip

    cli("workspace", "create", "ws")
    args.token = cli("token", "create", "--workspace", "ws", "--permission", "admin").split()[-1]
    node = SoakNode(0, database, args.mode, env, workdir)
    node.schema, node.admin = schema, args.database
    node.start()
    return node


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--mode", choices=["commit", "buffered"], default="commit")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--share", type=float, default=0.8, help="of the measured maximum")
    parser.add_argument("--probe", type=int, default=10, help="seconds to measure it")
    parser.add_argument("--window", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--counters", type=int, default=1000)
    parser.add_argument("--database", default=POSTGRES)
    parser.add_argument("--redis", default=REDIS)
    parser.add_argument("--json", type=Path, help="write the report here too")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def summary(report: Report) -> str:
    s = report.samples[1:] or report.samples
    if not s:
        return f"max {report.max_rate:.0f}/s; no window ran"
    return (
        f"max {report.max_rate:.0f}/s, target {report.target_rate:.0f}/s; "
        f"{report.requests} requests, {report.errors} errors; "
        f"rate {min(x.rate for x in s):.0f}..{max(x.rate for x in s):.0f}/s "
        f"({report.on_target} of {len(s)} windows within {ON_TARGET:.0%}); "
        f"p50 median {statistics.median(x.p50_ms for x in s)} ms; "
        f"p99 {min(x.p99_ms for x in s)}..{max(x.p99_ms for x in s)} ms; "
        f"RSS {min(x.rss_mb for x in s)}..{max(x.rss_mb for x in s)} MB; "
        f"fds {min(x.fds for x in s)}..{max(x.fds for x in s)}; "
        f"up_count {report.stored_up} = {report.created} + {report.up_200} 200s to up: "
        f"{'exact' if report.stored_up == report.created + report.up_200 else 'NOT exact'}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="tally-soak-") as tmp:
        report = soak(args, Path(tmp))
    print(summary(report))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    for failure in report.failures:
        print(f"FAILED: {failure}")
    sys.exit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
