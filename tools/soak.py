"""Soak: hold a real server at a share of its measured maximum, watch it for drift.

    python -m tools.soak --minutes 10            # the documented run (docs/durability.md)
    python -m tools.soak --minutes 1 --backend postgresql

First it measures the maximum: `--connections` keep-alive connections send requests
back to back for `--probe` seconds (the workload below). Then it sends `--share` (80 %)
of that rate, paced (each connection waits for its next slot, so the rate holds
whatever the latency), for `--minutes`, and every `--sample` seconds it records the
rate, the errors, p50 / p99 latency, and the server's memory (RSS of every process of
its group: granian's main process and its worker) and open file descriptors.

The workload: 80 % `up` on one of `--counters` (1,000) counters, 15 % reading one, 5 %
its stats.

The checks (exit status 1 if one fails): no answer but 200 and no connection error;
memory flat once warm: the mean RSS of the last third of the samples at most 5 % (or
8 MB) above the mean of the middle third (the first third fills the caches, e.g. the
stats cache of every counter); file descriptors flat: the last sample's count at most
8 above the first's; p99 steady: after the first sample (which creates the counters),
no sample's p99 above 3x the median of the samples' p99s (and 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools.chaos import POSTGRES, REDIS
from tools.node import TALLY, Connection, Node, Unanswered, clean_env


@dataclass
class Sample:
    at: float  # seconds since the soak began
    requests: int
    rate: float
    errors: int
    p50_ms: float
    p99_ms: float
    rss_mb: float
    fds: int


@dataclass
class Report:
    max_rate: float = 0.0
    target_rate: float = 0.0
    requests: int = 0
    errors: int = 0
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


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


class Load:
    """The workload over keep-alive connections, with per-interval statistics."""

    def __init__(self, port: int, token: str, seed: int, counters: int) -> None:
        self.port = port
        self.counters = counters
        self.token = token
        self.rng = random.Random(seed)
        self.latencies: list[float] = []
        self.errors = 0
        self.requests = 0

    def path(self) -> str:
        name = f"c{self.rng.randrange(self.counters)}"
        roll = self.rng.random()
        if roll < 0.80:
            return f"/v2/ws/{name}/up"
        return f"/v2/ws/{name}" if roll < 0.95 else f"/v2/ws/{name}/stats"

    async def worker(self, until: float, interval: float) -> None:
        """Requests until `until`; one every `interval` s (0: back to back)."""
        conn: Connection | None = None
        slot = time.monotonic()
        while (now := time.monotonic()) < until:
            if interval:
                slot = max(slot + interval, now - interval)  # no catch-up burst
                if slot > now:
                    await asyncio.sleep(slot - now)
            path = self.path()
            started = time.perf_counter()
            try:
                conn = conn or await Connection.open(self.port)
                status, _, _ = await conn.get(path, self.token)
            except (Unanswered, OSError, TimeoutError):
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                continue
            self.requests += 1
            self.latencies.append(time.perf_counter() - started)
            if status != 200 and not (status == 404 and "/up" not in path):
                self.errors += 1  # a read of a counter not counted yet is a 404
        if conn is not None:
            conn.close()

    def take(self) -> tuple[int, int, list[float]]:
        out = (self.requests, self.errors, self.latencies)
        self.requests, self.errors, self.latencies = 0, 0, []
        return out


def quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def soak(args: argparse.Namespace, workdir: Path) -> Report:
    report = Report()
    node = setup(args, workdir)
    try:
        assert node.proc is not None
        load = Load(node.port, args.token, args.seed, args.counters)
        until = time.monotonic() + args.probe
        await asyncio.gather(*(load.worker(until, 0) for _ in range(args.connections)))
        done, errors, _ = load.take()
        report.max_rate = done / args.probe
        report.target_rate = report.max_rate * args.share
        report.errors += errors
        interval = args.connections / report.target_rate
        began = time.monotonic()
        end = began + args.minutes * 60
        workers = [asyncio.create_task(load.worker(end, interval)) for _ in range(args.connections)]
        last = began
        while (now := time.monotonic()) < end:
            await asyncio.sleep(min(args.sample, end - now))
            requests, errors, latencies = load.take()
            now = time.monotonic()
            rss, fds = footprint(node.proc.pid)
            p50, p99 = (round(quantile(latencies, q) * 1000, 2) for q in (0.50, 0.99))
            rate = round(requests / (now - last), 1)
            sample = Sample(
                round(now - began, 1), requests, rate, errors, p50, p99, round(rss, 1), fds
            )
            last = now
            report.samples.append(sample)
            report.requests += requests
            report.errors += errors
            if not args.quiet:
                print(json.dumps(asdict(sample)), flush=True)
        await asyncio.gather(*workers)
        requests, errors, _ = load.take()
        report.requests += requests
        report.errors += errors
    finally:
        await asyncio.to_thread(node.signal, signal.SIGTERM)  # the loop runs on meanwhile
        node.teardown()
    report.failures = judge(report)
    return report


def judge(report: Report) -> list[str]:
    out = []
    if report.errors:
        out.append(f"{report.errors} errors")
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
    warm = samples[1:]  # the first sample creates the counters (inserts, not updates)
    median = statistics.median(s.p99_ms for s in warm)
    worst = max(s.p99_ms for s in warm)
    if worst > max(3 * median, 50.0):
        out.append(f"p99 not steady: a sample at {worst} ms, median {median} ms")
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
    parser.add_argument("--probe", type=float, default=10.0, help="seconds to measure it")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--counters", type=int, default=1000)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds per sample")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--database", default=POSTGRES)
    parser.add_argument("--redis", default=REDIS)
    parser.add_argument("--json", type=Path, help="write the report here too")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def summary(report: Report) -> str:
    s = report.samples[1:] or report.samples
    return (
        f"max {report.max_rate:.0f}/s, target {report.target_rate:.0f}/s; "
        f"{report.requests} requests, {report.errors} errors; "
        f"rate {min(x.rate for x in s):.0f}..{max(x.rate for x in s):.0f}/s; "
        f"p99 {min(x.p99_ms for x in s)}..{max(x.p99_ms for x in s)} ms; "
        f"RSS {min(x.rss_mb for x in s)}..{max(x.rss_mb for x in s)} MB; "
        f"fds {min(x.fds for x in s)}..{max(x.fds for x in s)}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="tally-soak-") as tmp:
        report = asyncio.run(soak(args, Path(tmp)))
    print(summary(report))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    for failure in report.failures:
        print(f"FAILED: {failure}")
    sys.exit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
