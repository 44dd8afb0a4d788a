"""wrk: installed if missing, run for a bounded time with a Lua script of bench/lua/.

Every load uses the same wrk settings (THREADS, CONNECTIONS, TIMEOUT) and the same Lua
hooks (bench/lua/common.lua), the ceiling included, so the client's own cost is the same
in every measurement; only a load that says so (`Load.connections`: the few-clients
pair, see bench/scenarios.py) keeps fewer connections open.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tools import apt

LUA_DIR = Path(__file__).resolve().parent / "lua"
THREADS = 2
CONNECTIONS = 64
TIMEOUT = "2s"
DRAIN_SECONDS = 0.5  # the last part of a counting load, see bench/lua/common.lua
_RESULT_MARK = "BENCH_RESULT "
_GRACE = 30.0  # wrk gets its duration plus this before it is killed


class WrkError(RuntimeError):
    """wrk is missing and cannot be installed, or a run gave no summary."""


def ensure_wrk() -> str:
    """The path of wrk, installing Debian's package first if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: apt-get install -y wrk", flush=True)
    apt.install("wrk")
    found = shutil.which("wrk")
    if not found:
        raise WrkError("wrk is not installed and `apt-get install -y wrk` did not install it")
    return found


def wrk_version(wrk: str) -> str:
    """wrk's own version line, e.g. 'wrk debian/4.1.0-3+b2 [epoll]'."""
    proc = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False, timeout=10)
    lines = (proc.stdout + proc.stderr).splitlines()
    return lines[0].split(" Copyright")[0].strip() if lines else "unknown"


@dataclass(frozen=True)
class Load:
    """What wrk sends: `script` of bench/lua/ ("hot", "random" or "roundrobin") with its
    settings.

    `path` is the path of every request ("{}" becomes an integer below `count` with the
    random and roundrobin scripts: a random one, or each in turn). With `drain_path`,
    the last DRAIN_SECONDS go there instead, and 200s whose body holds `drain_mark` are
    counted apart. `settings` are more environment variables for the script (e.g.
    soak.lua's paths and pacing).
    """

    script: str
    path: str
    count: int = 0
    token: str | None = None
    drain_path: str | None = None
    drain_mark: str | None = None
    settings: tuple[tuple[str, str], ...] = ()
    connections: int = CONNECTIONS

    @property
    def threads(self) -> int:
        return min(THREADS, self.connections)

    def env(self, seconds: int) -> dict[str, str]:
        env = {
            "BENCH_PATH": self.path,
            "BENCH_COUNT": str(self.count),
            "BENCH_THREADS": str(self.threads),
        }
        if self.token:
            env["BENCH_TOKEN"] = self.token
        if self.drain_path:
            env["BENCH_DRAIN_PATH"] = self.drain_path
            env["BENCH_DRAIN_MARK"] = self.drain_mark or ""
            env["BENCH_MEASURE"] = str(max(0.0, seconds - DRAIN_SECONDS))
        return env | dict(self.settings)


@dataclass(frozen=True)
class WrkResult:
    """One wrk run, as its Lua `done` hook summed it up."""

    duration_s: float
    requests: int  # responses received
    sent: int  # requests wrk wrote (one more than that is built to check the script)
    counted_200: int  # 200s of the measured phase
    drained_200: int  # 200s of the drain phase
    statuses: dict[int, int]
    errors: dict[str, int]  # socket errors: connect, read, write, timeout (status: >= 400)
    latency_ms: dict[str, float]
    tallies: dict[str, int]  # the script's own counts (see bench/lua/common.lua)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def rate(self, status: int) -> float:
        """Responses with this status per second."""
        return self.statuses.get(status, 0) / self.duration_s if self.duration_s else 0.0

    def other_statuses(self, expected: int) -> dict[int, int]:
        return {s: n for s, n in sorted(self.statuses.items()) if s != expected}

    def socket_errors(self) -> dict[str, int]:
        return {k: n for k, n in self.errors.items() if k != "status" and n}


def run_wrk(wrk: str, base_url: str, load: Load, seconds: int, log: Path) -> WrkResult:
    """Run one load for `seconds` against `base_url`; wrk's output goes to `log`."""
    argv = [
        wrk,
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{seconds}s",
        "--timeout",
        TIMEOUT,
        "-s",
        str(LUA_DIR / f"{load.script}.lua"),
        base_url,
    ]
    env = {**os.environ, "LUA_PATH": f"{LUA_DIR}/?.lua;;", **load.env(seconds)}
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # a Ctrl-C reaches the bench, which stops wrk itself
    )
    try:
        out, err = proc.communicate(timeout=seconds + _GRACE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    settings = {k: "***" if k == "BENCH_TOKEN" else v for k, v in load.env(seconds).items()}
    shown = " ".join(f"{k}={v}" for k, v in settings.items())
    log.write_text(f"$ {shown} {' '.join(argv)}\n{out}\n--- stderr\n{err}")
    return _parse(out, err, proc.returncode, log)


def _parse(out: str, err: str, code: int, log: Path) -> WrkResult:
    line = next((ln for ln in out.splitlines() if ln.startswith(_RESULT_MARK)), None)
    if code != 0 or line is None:
        raise WrkError(f"wrk exited {code} without a summary (see {log}): {err.strip()[-500:]}")
    raw = json.loads(line[len(_RESULT_MARK) :])
    return WrkResult(
        duration_s=raw["duration_us"] / 1e6,
        requests=raw["requests"],
        sent=raw["sent"],
        counted_200=raw["counted_200"],
        drained_200=raw["drained_200"],
        statuses={int(s): n for s, n in raw["statuses"].items()},
        errors=raw["errors"],
        latency_ms={k: v / 1000 for k, v in raw["latency_us"].items()},
        tallies=raw.get("tallies", {}),
    )
