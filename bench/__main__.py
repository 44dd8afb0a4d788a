"""`python -m bench`: measure Tally against the ceiling of its own server settings.

Not part of the test suite. Starts every server it measures on 127.0.0.1 and stops them
all, also on failure or Ctrl-C. See docs/benchmarks.md for what it measures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from bench import fixtures, hello, report, scale, scaleout, scenarios, viewer
from bench.progress import progress
from bench.report import Results
from bench.scenarios import SCENARIOS, Run
from bench.servers import ceiling_server
from bench.wrk import CONNECTIONS, THREADS, ensure_wrk, wrk_version

ROOT = Path(__file__).resolve().parent.parent
FULL = {"warmup_s": 2, "seconds": 10}
QUICK = {"warmup_s": 1, "seconds": 3}
NAMES = [s.name for s in SCENARIOS] + [
    scale.UP_1M.name,
    "scale",
    scaleout.SCALEOUT.name,
    viewer.NAME,
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 s loads; of the scale section only up-1m (~3 min in all)",
    )
    parser.add_argument(
        "--only",
        metavar="SCENARIO",
        action="append",
        help=f"run only this scenario (repeatable, or comma-separated): {', '.join(NAMES)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench" / "results",
        help="where latest.json and the logs go (default: bench/results)",
    )
    parser.add_argument(
        "--viewer-counters",
        type=int,
        default=viewer.COUNTERS,
        help=f"counters of the workspace {viewer.NAME}'s viewer pages through "
        f"(default {viewer.COUNTERS:,}; fewer for a quick check)",
    )
    args = parser.parse_args(argv)
    only = [n.strip() for item in args.only or [] for n in item.split(",") if n.strip()]
    unknown = sorted(set(only) - set(NAMES))
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    args.only = only
    return args


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def measure_all(args: argparse.Namespace, run: Run, work: Path) -> Results:
    selected = [s for s in SCENARIOS if not args.only or s.name in args.only]
    # up-1m alone, or the whole scale section; --quick runs up-1m (a bulk insert of the
    # 1M counters takes seconds) without the in-process flush and history measurements
    with_scale = bool({"scale", scale.UP_1M.name} & set(args.only)) or not args.only
    scale_details = "scale" in args.only or (not args.quick and not args.only)
    with_scaleout = scaleout.SCALEOUT.name in args.only or not args.only
    with_viewer = viewer.NAME in args.only or not args.only
    # PostgreSQL and Redis must be there: find out now, not after minutes of loads
    services = scaleout.check_services() if with_scaleout else None
    mode = "partial" if args.only else ("quick" if args.quick else "full")
    options, _ = hello.tally_granian_options()
    results = Results(
        command=" ".join(["python -m bench", *sys.argv[1:]]),
        mode=mode,
        started_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        durations={
            **(QUICK if args.quick else FULL),
            "threads": THREADS,
            "connections": CONNECTIONS,
        },
        machine=report.machine(wrk_version(run.wrk)),
        ceiling_options=hello.describe(options),
        ceilings=[],
        scenarios=[],
        scale=None,
    )
    base = scenarios.prepare_base(work) if selected else None
    if base is not None:
        results.fixtures = {"insert_100k_s": base.insert_100k_s}
    big = scale.prepare(work) if with_scale else None
    plan = [*selected, *([scale.UP_1M] if big else [])]
    with ceiling_server(run.logs) as ceiling:
        results.ceilings.append(scenarios.run_ceiling(run, ceiling, 0))
        for scenario in plan:
            if big is not None and scenario is scale.UP_1M:
                db, token = big.path, None
            else:
                assert base is not None
                db, token = work / f"{scenario.name}.db", base.token
                fixtures.backup(base.path, db)
            m = scenarios.run_scenario(run, scenario, db, token)
            results.ceilings.append(scenarios.run_ceiling(run, ceiling, len(results.ceilings)))
            around = (results.ceilings[-2].rps + results.ceilings[-1].rps) / 2
            m.judge(around, scenario.target)
            if big is not None and scenario is scale.UP_1M:
                results.scale = scale.finish(big, m, work, details=scale_details)
            else:
                results.scenarios.append(m)
                db.unlink()
        if with_viewer:
            for m in viewer.run_viewer(run, work, args.viewer_counters):
                results.ceilings.append(scenarios.run_ceiling(run, ceiling, len(results.ceilings)))
                around = (results.ceilings[-2].rps + results.ceilings[-1].rps) / 2
                m.judge(around, None)  # its target, set by run_viewer, is kept
                results.scenarios.append(m)
    for c in results.ceilings:
        c.judge(results.ceiling_rps, None)
    scenarios.compare_baselines(selected, results.scenarios)
    if services is not None:  # its own ceiling: the single-node ceiling server is stopped
        results.scaleout = scaleout.run_scaleout(run, services)
    results.machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGHUP, _stop_on_signal)
    started = time.monotonic()
    logs = args.out / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    durations = QUICK if args.quick else FULL
    run = Run(ensure_wrk(), durations["warmup_s"], durations["seconds"], logs)
    try:
        with tempfile.TemporaryDirectory(prefix="tally-bench-") as tmp:
            results = measure_all(args, run, Path(tmp))
    except KeyboardInterrupt:
        print("\ninterrupted: every server was stopped", file=sys.stderr)
        return 130
    results.elapsed_s = time.monotonic() - started
    report.write_json(results, args.out / "latest.json")
    text = report.markdown(results)
    if results.mode == "full":
        report.write_json(results, ROOT / "docs" / "benchmarks.json")
        (ROOT / "docs" / "benchmarks.md").write_text(text)
    print()
    print("\n".join(report.results_table(results)))
    print()
    if report.notes(results):
        print("\n".join(report.notes(results)))
        print()
    print("\n".join(report.details_table(results)))
    if results.scale is not None:
        print()
        print("\n".join(report.scale_section(results.scale)))
    if results.scaleout is not None:
        print()
        print("\n".join(report.scaleout_section(results.scaleout)))
    print()
    print(f"Machine: {report.machine_line(results)}.")
    print(report.noise_line(results))
    print(report.DRIFT_NOTE)
    written = [args.out / "latest.json"]
    if results.mode == "full":
        written += [ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "benchmarks.json"]
    progress(f"done in {results.elapsed_s / 60:.1f} min; wrote {', '.join(map(str, written))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
