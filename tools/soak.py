"""Soak: hold a real server at a share of its measured maximum, watch it for drift.

    python -m tools.soak --minutes 10            # the documented run (docs/durability.md)
    python -m tools.soak --minutes 1 --backend postgresql

The load is wrk's (bench/wrk.py: its threads, connections and timeout; the Lua script
bench/lua/soak.lua): 80 % `up` on one of `--counters` (1,000) counters at random, 15 %
reading one, 5 % its stats. The counters are created first (one `up` each). Then the
maximum: wrk sends the workload as fast as it is answered for `--probe` seconds. Then
`--share` (80 %) of that rate, the target, for `--minutes`, in consecutive wrk runs of
`--window` seconds. Each window gives its rate, errors (answers but 200, and socket
errors), p50 / p99 latency, and, sampled in its middle, the server's memory (RSS of
every process of its group: granian's main process and its worker) and open file
descriptors.

The pace: wrk has no fixed-rate mode, so each wrk thread hands its requests out on an
even schedule of slots, its share of the target a second, through the Lua `delay()`
hook (bench/lua/pacer.lua): a connection answered waits for the next free slot. Slots
that went by while every connection waited for an answer are still used if at most
50 ms late (the jitter of the answers costs no requests), and dropped if older. So
every window aims at the target and no more: whatever the latency, the rate is the
target while the server can give it, and what it can below that; a slow stretch's
missing requests are not made up afterwards (50 ms of them at most: 0.5 % of a 10 s
window). The soak used to set one wait per window instead, corrected after each window
from the rate the last one gave; a correction learns only from the window past, so
after a slow window it shortened the wait and the next, normal window ran a burst above
the target (6,122/s for a 4,734/s target in a 10-minute run, docs/durability.md),
loading the server hardest right after it struggled and laying the p99 that followed
at its door. A schedule kept inside wrk needs no correction between windows and cannot
overshoot.

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


def workload(args: argparse.Namespace, rate: float | None) -> wrk.Load:
    """The soak's load (bench/lua/soak.lua), paced at `rate` requests per second (None:
    unpaced)."""
    base = f"/v2/{WORKSPACE}/c{{}}"
    settings = [("SOAK_GET_PATH", base), ("SOAK_STATS_PATH", f"{base}/stats")]
    if rate is not None:
        settings.append(("SOAK_RATE", f"{rate:.1f}"))
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
    rate: float | None,
    seconds: int,
    at: float,
) -> Sample:
    """One wrk run of `seconds` paced at `rate` (None: unpaced), as a Sample (`at`: its
    end, since the soak began)."""
    assert node.proc is not None
    name = f"window-{len(list(logs.glob('window-*')))}"
    with Watch(node.proc.pid, seconds / 2) as watch:
        result = wrk.run_wrk(
            args.wrk, f"http://{HOST}:{node.port}", workload(args, rate), seconds, logs / name
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
        windows = max(1, math.ceil(args.minutes * 60 / args.window))
        began = time.monotonic()
        for _ in range(windows):
            at = time.monotonic() - began + args.window
            sample = window(args, node, logs, report.target_rate, args.window, at)
            report.samples.append(sample)
            tally(report, sample)
            if not args.quiet:
                print(json.dumps(asdict(sample)), flush=True)
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
    warm = samples[1:]  # the first window fills the caches
    median = statistics.median(s.p99_ms for s in warm)
    worst = max(s.p99_ms for s in warm)
    if worst > max(3 * median, 50.0):
        out.append(f"p99 not steady: a window at {worst} ms, median {median:.2f} ms")
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
    # no limits: the soak creates its 1,000 counters (and `drain`) at once with one
    # token, more than TALLY_CREATE_RATE_LIMIT's default budget of new counters
    env = {
        "TALLY_RATE_LIMIT": "off",
        "TALLY_CREATE_RATE_LIMIT": "off",
        "TALLY_COUNTER_QUOTA": "off",
    }
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
        f"p50 median {statistics.median(x.p50_ms for x in s):.2f} ms; "
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
