"""What the benchmark tells: progress lines, the machine, the results as JSON and Markdown."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sqlite3
import statistics
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.scaleout import NGINX_WORKERS, SPREAD_WARMUP
from bench.scaleout import NODES as SCALEOUT_NODES
from bench.scenarios import DRAIN, HISTORY_DAYS, NO_LIMIT, SPREAD, Measurement
from bench.wrk import DRAIN_SECONDS

if TYPE_CHECKING:
    from bench.scale import ScaleResult
    from bench.scaleout import GroupCommit, ScaleoutResult

COMMAND = "bench/run"
DRIFT_NOTE = (
    "Absolute numbers drift on shared machines (other work on the host, CPU frequency, "
    "noisy neighbours), and wrk shares the cores with the server: compare the ratios to "
    "the ceiling, measured in the same run with the same server settings, not the req/s."
)


def machine(wrk_version: str) -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "granian": version("granian"),
        "wrk": wrk_version,
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


@dataclass
class Results:
    command: str
    mode: str  # full, quick or partial (--only)
    started_at: str
    durations: dict[str, int]
    machine: dict[str, Any]
    ceiling_options: dict[str, str]
    ceilings: list[Measurement]
    scenarios: list[Measurement]
    scale: ScaleResult | None
    fixtures: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    scaleout: ScaleoutResult | None = None

    @property
    def ceiling_rps(self) -> float:
        """The median of the ceiling runs (each scenario is judged against its own pair)."""
        return statistics.median(c.rps for c in self.ceilings)

    def measurements(self) -> list[Measurement]:
        """The scenarios' measurements, the scale and scale-out loads included (not the
        ceilings)."""
        scale = [self.scale.load] if self.scale else []
        so = self.scaleout
        scaleout = [so.load, so.spread, so.reads] if so else []
        return [*self.scenarios, *scale, *scaleout]


def plain(obj: Any) -> Any:
    """JSON-ready: dataclasses as dicts of their fields and properties."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        for name, attr in vars(type(obj)).items():
            if isinstance(attr, property):
                out[name] = plain(getattr(obj, name))
        return out
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if isinstance(obj, float):
        return round(obj, 4)
    return obj


def write_json(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plain(results), indent=2) + "\n")


# Markdown ------------------------------------------------------------------------------


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows)]


def _met(m: Measurement) -> str:
    return "—" if m.met is None else ("yes" if m.met else "**no**")


def _load(machine: dict[str, Any], key: str) -> str:
    return "/".join(str(x) for x in machine.get(key, [])) or "?"


def _counts(counts: dict[Any, int]) -> str:
    return ", ".join(f"{k}: {n:,}" for k, n in counts.items()) or "none"


def _result_row(m: Measurement) -> list[str]:
    return [
        f"`{m.name}` {m.title}",
        f"{m.rps:,.0f}",
        f"{m.p50_ms:.2f}",
        f"{m.p99_ms:.2f}",
        f"{m.ceiling_rps:,.0f}" if m.ceiling_rps else "—",
        f"{m.ratio:.2f}" if m.ratio is not None else "—",
        m.target or "—",
        _met(m),
    ]


def _ceiling_row(title: str, ceilings: list[Measurement], rps: float) -> list[str]:
    each = [c.rps for c in ceilings]
    return [
        title,
        f"{rps:,.0f}",
        f"{statistics.median(c.p50_ms for c in ceilings):.2f}",
        f"{statistics.median(c.p99_ms for c in ceilings):.2f}",
        f"{min(each):,.0f} to {max(each):,.0f}",
        "1",
        "—",
        "—",
    ]


def results_table(results: Results) -> list[str]:
    n = len(results.ceilings)
    title = f"ceiling: hello ASGI app (median of {n} runs)"
    rows = [_ceiling_row(title, results.ceilings, results.ceiling_rps)]
    rows += [_result_row(m) for m in results.scenarios]
    if results.scale is not None:
        sc = results.scale
        rows.append(_result_row(sc.load))
        rss = f"`{sc.load.name}` worker RSS: max {sc.load.rss_max_mb:.0f} MB over the run"
        met = "yes" if sc.rss_met else "**no**"
        rows.append([rss, "—", "—", "—", "—", "—", f"<= {sc.max_rss_target_mb:g} MB", met])
    if results.scaleout is not None:
        so = results.scaleout
        n = len(so.ceilings)
        title = f"ceiling: {so.nodes} hello ASGI nodes behind nginx (mean of {n} runs)"
        rows.append(_ceiling_row(title, so.ceilings, so.ceiling_rps))
        rows += [_result_row(so.load), _result_row(so.spread), _result_row(so.reads)]
    head = [
        "scenario",
        "req/s",
        "p50 ms",
        "p99 ms",
        "ceiling req/s",
        "x ceiling",
        "target",
        "met?",
    ]
    return _table(head, rows)


def notes(results: Results) -> list[str]:
    """The scenarios' notes (a scenario against its baseline, odd warm-up statuses)."""
    return [f"- `{m.name}`: {note}." for m in results.scenarios for note in m.notes]


def details_table(results: Results) -> list[str]:
    rows = []
    so = results.scaleout
    runs = [*results.ceilings, *results.scenarios]
    runs += [results.scale.load] if results.scale is not None else []
    runs += [*so.ceilings, so.load, so.spread, so.reads] if so is not None else []
    for m in runs:
        check = "—"
        if m.check is not None:
            verdict = "yes" if m.check.exact else "**no**"
            check = f"{verdict}: {m.check.seen_200:,} seen, {m.check.in_database:,} in DB"
        rows.append(
            [
                f"`{m.name}` ({len(m.workers)} nodes)" if m.workers else f"`{m.name}`",
                f"{m.rps:,.0f}",
                f"{m.requests:,}",
                _counts(m.unexpected),
                _counts(m.socket_errors),
                f"{m.cpu_cores:.2f}",
                f"{m.rss_max_mb:.0f}",
                check,
            ]
        )
    head = [
        "run",
        "req/s",
        "responses",
        "other statuses",
        "socket errors",
        "server CPU (cores)",
        "max RSS MB",
        "exact count",
    ]
    return _table(head, rows)


def scale_section(scale: ScaleResult) -> list[str]:
    h = scale.history
    lines = [
        f"## Scale: {scale.counters:,} counters",
        "",
        f"- Bulk insert of {scale.counters:,} counters (sqlite3, one transaction): "
        f"{scale.insert_s:.1f} s; database {scale.db_bytes / 1e6:.0f} MB.",
        f"- `up` over random counters: {scale.load.rps:,.0f} req/s "
        f"({scale.load.ratio or 0:.2f} x ceiling), p99 {scale.load.p99_ms:.2f} ms.",
        f"- Worker RSS: max {scale.load.rss_max_mb:.0f} MB over the run (sampled every "
        f"0.5 s; target <= {scale.max_rss_target_mb:g} MB), {scale.load.rss_last_mb:.0f} MB "
        "at its end.",
    ]
    if h is None or not scale.flushes:
        return [*lines, "- Flush and history sizes: not measured in this run (--quick)."]
    lines += [
        f"- History: {h.bytes_per_counter_day:,.0f} bytes per counter per day of hourly "
        f"buckets ({h.bytes_per_bucket:.1f} bytes per bucket; {h.counters:,} counters x "
        f"{h.hours} hours, file size after VACUUM).",
        "",
        "One flush (`Store.apply` of one batch: one transaction, fsync included), median of "
        "3, each on freshly drawn random counters:",
        "",
    ]
    rows = [
        [f.database, f"{f.changed:,}", f"{f.ms:.1f}", f"{f.ms_per_changed * 1000:.1f}"]
        for f in scale.flushes
    ]
    lines += _table(["database", "changed counters", "ms", "µs per changed counter"], rows)
    same = {f.counters: f for f in scale.flushes if f.changed == 1_000}
    if len(same) == 2:
        small, big = (same[k] for k in sorted(same))
        lines += [
            "",
            f"The same flush of {small.changed:,} changed counters takes "
            f"{big.ms / small.ms:.1f} x as long on the {big.database} database as on the "
            f"{small.database} one (1.0 would mean no dependence on the counters stored).",
        ]
    return lines


def _cpu_by_process(m: Measurement) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in m.cpu_by_process.items() if round(v, 2))


def _cpu_per_request(m: Measurement) -> str:
    """Each process's CPU per answered request, in µs (its cores over the requests per s)."""
    if not m.rps:
        return "—"
    return ", ".join(
        f"{k} {v / m.rps * 1e6:.0f}" for k, v in m.cpu_by_process.items() if round(v, 2)
    )


def _count(m: Measurement) -> str:
    if m.check is None:
        return "not checked"
    verdict = "exact" if m.check.exact else "**NOT exact**"
    return (
        f"{verdict}: {m.check.seen_200:,} 200s seen by wrk, {m.check.in_database:,} in PostgreSQL"
    )


def _group_commit(g: GroupCommit) -> str:
    each = "; ".join(
        f"node {i}: {n.batches:,} transactions of {n.ups_per_batch:.1f} ups and "
        f"{n.changes_per_batch:.1f} counters, {n.commit_ms:.2f} ms each"
        for i, n in enumerate(g.nodes)
    )
    return (
        f"{g.ups:,} ups (with the drain counter, warm-up and run) in {g.batches:,} PostgreSQL "
        f"transactions: {g.ups_per_batch:.1f} ups and {g.changes_per_batch:.2f} counter "
        f"changes per transaction ({each}; {g.failed:,} failed)"
    )


def _load_lines(m: Measurement, g: GroupCommit, what: str) -> list[str]:
    limiter = "**no**"
    if g.redis_limiter:
        limiter = f"yes ({g.redis_fallbacks:,} fallbacks to a node's own limiter)"
    nodes = "; ".join(
        f"node {i}: {w.cpu_cores:.2f} cores, RSS max {w.rss_max_mb:.0f} MB"
        for i, w in enumerate(m.workers)
    )
    return [
        f"- `{m.name}`: `up` {what} with the Write token, commit mode, through nginx: "
        f"{m.rps:,.0f} req/s, p50 {m.p50_ms:.2f} ms, p99 {m.p99_ms:.2f} ms: "
        f"{m.ratio or 0:.2f} x the ceiling (target: {m.target or '—'}: {_met(m)}).",
        f"  - Count: {_count(m)}.",
        f"  - Group commit: {_group_commit(g)}.",
        f"  - Rate limit through Redis: {limiter}.",
        f"  - Server CPU over the run and worker RSS: {nodes}.",
        f"  - CPU of every process over the run, in cores (of {os.cpu_count()}): "
        f"{_cpu_by_process(m)}; per `up`, in µs: {_cpu_per_request(m)}.",
        *(f"  - Note: {note}." for note in m.notes),
    ]


def scaleout_section(so: ScaleoutResult) -> list[str]:
    each = " and ".join(f"{c.rps:,.0f}" for c in so.ceilings)
    return [
        f"## Scale-out: {so.nodes} nodes on PostgreSQL and Redis behind nginx",
        "",
        f"Each load is judged against the ceiling of {so.nodes} hello nodes behind the same "
        f"nginx ({so.ceiling_rps:,.0f} req/s, the mean of {each} before and after the loads).",
        "",
        *_load_lines(so.load, so.group_commit, "on one hot counter"),
        *_load_lines(so.spread, so.spread_commit, f"over {SPREAD:,} counters in turn"),
        f"- `get` of the hot counter on the same cluster afterwards (reads batched per "
        f"node): {so.reads.rps:,.0f} req/s, p50 {so.reads.p50_ms:.2f} ms, p99 "
        f"{so.reads.p99_ms:.2f} ms: {so.reads.ratio or 0:.2f} x the same ceiling.",
        f"- CPU of every process over the ceiling's second run, in cores: "
        f"{_cpu_by_process(so.ceilings[-1])}; per request, in µs: "
        f"{_cpu_per_request(so.ceilings[-1])} (wrk: the load generator; bench: this "
        "benchmark's own process; other: anything else running on the machine).",
        f"- PostgreSQL {so.postgres}, Redis {so.redis}.",
    ]


def machine_line(results: Results) -> str:
    mc = results.machine
    return (
        f"{mc['cores']} cores ({mc['cpu']}), Python {mc['python']}, granian {mc['granian']}, "
        f"{mc['wrk']}, SQLite {mc['sqlite']}; load average (1/5/15 min) "
        f"{_load(mc, 'load_average_at_start')} at the start, "
        f"{_load(mc, 'load_average_at_end')} at the end"
    )


def noise_line(results: Results) -> str:
    rps = [c.rps for c in results.ceilings]
    spread = (max(rps) - min(rps)) / 2 / results.ceiling_rps * 100
    return (
        f"The {len(rps)} ceiling runs of this run spread from {min(rps):,.0f} to "
        f"{max(rps):,.0f} req/s (+/- {spread:.0f}% around their median): differences smaller "
        "than that are noise."
    )


def markdown(results: Results) -> str:
    d = results.durations
    lines = [
        "# Benchmarks",
        "",
        "Written by the benchmark itself (with `docs/benchmarks.json`, every figure); do not "
        "edit by hand. Reproduce with:",
        "",
        "```",
        COMMAND,
        "```",
        "",
        "(`scripts/setup`, then `.venv/bin/python -m bench`; `--quick` for a one-minute smoke "
        "run, `--only NAME` for one scenario, `--out DIR` for the results JSON. Only a full "
        "run rewrites this page.)",
        "",
        f"**{DRIFT_NOTE}**",
        "",
        f"Run of {results.started_at} ({results.mode} run, {results.elapsed_s / 60:.1f} min) "
        f"on {machine_line(results)}.",
        "",
        "## Results",
        "",
        f"wrk, {d['threads']} threads, {d['connections']} connections, {d['seconds']} s per "
        f"load after a {d['warmup_s']} s warm-up, on 127.0.0.1. req/s counts the responses "
        "of the scenario's status (200; 429 for `limited`); latency is over all responses. "
        "The ceiling is `bench/hello.py`, a plain ASGI app answering a constant JSON object, "
        "served by granian with the options of `tally serve` "
        f"({', '.join(f'{k}={v}' for k, v in results.ceiling_options.items())}). It is "
        "measured before the first scenario and after each one; a scenario's ratio is to the "
        "mean of the two ceiling runs around it (`ceiling req/s`). " + noise_line(results),
        "",
        *results_table(results),
        "",
        *notes(results),
        "",
        "Where a target is not met, [performance.md](performance.md) shows the profile that "
        "explains the gap and what it would take to close it.",
        "",
        *details_table(results),
        "",
    ]
    if results.scale is not None:
        lines += [*scale_section(results.scale), ""]
    if results.scaleout is not None:
        lines += [*scaleout_section(results.scaleout), ""]
    lines += METHOD
    return "\n".join(lines) + "\n"


METHOD = [
    "## How it is measured",
    "",
    "- Every scenario but `scaleout` runs on a fresh `tally serve` (1 granian worker, as "
    "shipped) on a free "
    "port, with a fresh copy of a database made beforehand: workspace and Write token with "
    "the `tally` CLI, 100,000 counters bulk-inserted with sqlite3 in one transaction, and "
    f"{HISTORY_DAYS} days of hourly history for the `get`/`stats` counter through "
    "`Store.apply`.",
    "- `up-10k` sends `up` with the Write token to the counters c0 .. c9999 in turn "
    "(bench/lua/roundrobin.lua: the 2 wrk threads interleave, so every batch the server "
    "commits spreads over as many counters as it carries requests). `naive` is the same "
    "load against bench/naive.py on a copy of the same database: a Starlette app whose "
    "synchronous `up` handler opens the SQLite file with the stdlib defaults, runs one "
    "UPDATE and commits, per request (what a first attempt looks like; kept out of the "
    "package). The note on `up-10k` gives its throughput against `naive`'s, each as a "
    "ratio to its own ceiling runs (target: at least 50 x). `naive` is not count-checked: "
    "wrk gives up on a request after 2 s, and the naive server still counts it.",
    "- `up-new` sends `up` with the Write token to a name never used before, every "
    "request (bench/lua/fresh.lua), so each creates its counter; the budget of new "
    "counters and the quota stay on at bounds the load does not reach. Its note gives it "
    "against `up-10k`, each as a ratio to its own ceiling runs (target: at least 0.5 x).",
    "- `up-commit-c4` and `up-buffered-c4` are `up-commit` and `up-buffered` with 4 wrk "
    "connections (2 per thread) instead of 64: clients that wait for each answer, where "
    "commit mode's wait for the commit is the bound (docs/performance.md, buffered "
    "against commit). The notes give `up-buffered` against `up-commit` and the pair "
    "against each other (target for the pair: at least 1.2 x).",
    "- `up-1m` (also `--only up-1m`, and in `--quick`) is `up` over random counters of "
    "1,000,000 bulk-inserted ones; the worker's RSS over it is reported. The full run adds "
    "the flush timings and the history size of the scale section.",
    f"- The rate limiter stays on (`TALLY_RATE_LIMIT={NO_LIMIT}`, never rejecting) so its "
    "cost is measured; `limited` sets `10/60s` on one path, so nearly all answers are 429.",
    "- Exact count: after the server stopped (SIGTERM: buffered mode commits then), the sum of "
    "`up_count` over the counters the load hit must equal the 200s wrk saw for them, "
    "warm-up included. wrk cuts off the requests in flight when it stops, and the server may "
    f"still count them, so the last {DRAIN_SECONDS:g} s of a counting load goes to a separate "
    f"`{DRAIN}` counter (bench/lua/common.lua) whose answers are counted apart.",
    "- Metrics are off (the default) in every scenario but `up-metrics`, which is "
    "`up-commit` with `TALLY_METRICS_TOKEN` set (every request counted by route, status "
    "and latency); its note gives its throughput against `up-commit`'s, each as a ratio to "
    "its own ceiling runs. The nodes of `scaleout` count too (their `/metrics` is read).",
    "- Server CPU is the worker's CPU time over the measured run, in cores; RSS is the "
    "worker's VmRSS, sampled every 0.5 s over the warm-up and the run (for `scaleout`, both "
    "nodes' workers together).",
    f"- `scaleout` runs {SCALEOUT_NODES} `tally serve` nodes (`--durability commit`, the Redis "
    "rate limiter with the never-rejecting limit above, `TALLY_TRUSTED_PROXIES=127.0.0.1`) "
    f"behind Debian's nginx ({NGINX_WORKERS} worker, keep-alive to the nodes) with "
    "`tools.cluster.Cluster`, "
    "on this machine's PostgreSQL (`BENCH_POSTGRES_URL`, default "
    "`postgresql://postgres@127.0.0.1:5432/test`, in a schema of the run's own, dropped at "
    "the end) and Redis (`BENCH_REDIS_URL`, default `redis://127.0.0.1:6379/0`, under a key "
    "prefix of the run's own, deleted at the end); the workspace, the Write token and "
    "the hot and drain counters come from the `tally` CLI before the nodes start, the "
    f"{SPREAD:,} counters c0 .. c{SPREAD - 1} from one INSERT. wrk loads nginx the same "
    "way as every other scenario: `scaleout` on the hot counter, then `scaleout-10k` over "
    "the numbered counters in turn (bench/lua/roundrobin.lua, as `up-10k`, with a warm-up "
    f"{SPREAD_WARMUP} times as long, so that every node has looked up every counter before "
    "the run), then "
    "`scaleout-get` loads `get` of the hot counter on the same cluster. Each `up` load's "
    "count is checked in PostgreSQL after the nodes stopped; each node's `/metrics` (read "
    "with `TALLY_METRICS_TOKEN` before and after each load, once nothing was pending) tell "
    "its transactions, the ups and counters each carried and their mean duration."
    f" Their ceiling is `bench/hello.py` as {SCALEOUT_NODES} nodes behind the same "
    "kind of nginx, loaded before and after them (each ratio is to its mean); the single-node "
    "ceiling server is stopped by then. PostgreSQL, Redis, nginx, wrk and the nodes all share "
    "the machine's cores: the scale-out section gives the CPU each used.",
]
