"""Debian's Prometheus for the tests: `promtool` to check and unit-test the alert rules
of deploy/prometheus/, and a real `prometheus` server on loopback that scrapes real
`tally serve` processes and evaluates those rules.

The binaries come from Debian's `prometheus` package. When they are missing and the
tests run as root (as in CI) `binaries()` installs it with apt-get (tools/apt.py); else
the tests skip with the reason, except under CI=true, where they fail.

`shrunk_rules(...)` writes the committed rules with every duration shrunk (`for:` to seconds,
ranges to `RANGE`), so that a test sees an alert fire within seconds of its fault, as
production would within minutes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from tools import apt

DEPLOY = Path(__file__).parents[1] / "deploy"
DOCS = Path(__file__).parents[1] / "docs" / "deploying.md"  # its "Metrics" table
RULES = DEPLOY / "prometheus" / "tally.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tally.rules.test.yml"
PROMETHEUS, PROMTOOL = "/usr/bin/prometheus", "/usr/bin/promtool"
JOB = "tally"  # the job name the rules and the dashboard assume
RANGE = "15s"  # what a test's rules and dashboard queries use for every range
FOR = "3s"  # what a test's rules use for every `for:`
_RANGE_RE = re.compile(r"\[\d+[smhd]\]")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the monitoring tests must run)", pytrace=False)
    pytest.skip(reason)


def binaries() -> tuple[str, str]:
    """The paths of prometheus and promtool, installed with apt-get if missing (as root)."""
    if not (Path(PROMETHEUS).exists() and Path(PROMTOOL).exists()):
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            _unavailable(f"{PROMTOOL} is missing; install Debian's prometheus (apt-get)")
        apt.install("prometheus", quiet=True)
        if not (Path(PROMETHEUS).exists() and Path(PROMTOOL).exists()):
            _unavailable("apt-get install -y prometheus did not install prometheus and promtool")
    return PROMETHEUS, PROMTOOL


METRIC_RE = re.compile(r"\b(tally_[a-z_]+|up)\b")
EXPANSION_RE = re.compile(r"(tally_[a-z_]*)\{([a-z_,]+)\}([a-z_]+)")


def documented_metrics() -> set[str]:
    """The metric names of the table in docs/deploying.md, "Metrics": `name{labels}`
    without its labels, `prefix_{a,b}_suffix` spelled out."""
    names: set[str] = set()
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `tally_"):
            for cell in re.findall(r"`(tally_[^`]*)`", line.split("|")[1]):
                match = EXPANSION_RE.fullmatch(cell)
                if match:
                    names.update(f"{match[1]}{part}{match[3]}" for part in match[2].split(","))
                else:
                    names.add(cell.split("{")[0])
    return names


def unknown_metrics(expr: str, known: set[str]) -> set[str]:
    """The metric names `expr` reads that are not in `known` (a histogram's series are
    known by the histogram's name)."""
    unknown = set()
    for name in METRIC_RE.findall(expr):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in known and base not in known:
            unknown.add(name)
    return unknown


def shrink(expr: str) -> str:
    """`expr` with every range selector `RANGE` long."""
    return _RANGE_RE.sub(f"[{RANGE}]", expr)


def alerts() -> list[dict[str, Any]]:
    """The alerting rules of deploy/prometheus/tally.rules.yml."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def shrunk_rules(path: Path) -> Path:
    """Write the committed rules to `path`, every duration shrunk (see the module doc)."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule["expr"] = shrink(rule["expr"])
            if "for" in rule:
                rule["for"] = FOR
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Alert:
    name: str
    state: str  # pending or firing
    labels: dict[str, str]


class Prometheus:
    """A real Prometheus on 127.0.0.1 scraping `targets` (host:port of metrics listeners)
    every second and evaluating `rules` every second; stopped by `close`."""

    def __init__(self, workdir: Path, targets: Sequence[str], rules: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": JOB, "static_configs": [{"targets": list(targets)}]},
            ],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10.0
        )

    def start(self, timeout: float = 30.0) -> Prometheus:
        return self.launch().wait_ready(timeout)

    def launch(self) -> Prometheus:
        """Start the process, not waiting for it (it starts while the servers do)."""
        prometheus, _ = binaries()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                    "--web.enable-lifecycle",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 30.0) -> Prometheus:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.output()}")
            try:
                if self.client.get("/-/ready").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-6000:]

    def close(self) -> None:
        self.client.close()
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10.0)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5.0)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) `expr` answers now."""
        r = self.client.get("/api/v1/query", params={"query": expr})
        body = r.json()
        assert r.status_code == 200, (expr, body)
        assert body["status"] == "success", (expr, body)
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def series(self, match: str) -> list[dict[str, str]]:
        """The series (label sets) of `match` that Prometheus holds."""
        r = self.client.get("/api/v1/series", params={"match[]": match})
        body = r.json()
        assert r.status_code == 200, (match, body)
        assert body["status"] == "success", (match, body)
        series: list[dict[str, str]] = body["data"]
        return series

    def alerts(self) -> list[Alert]:
        body = self.client.get("/api/v1/alerts").json()
        return [
            Alert(a["labels"]["alertname"], a["state"], a["labels"]) for a in body["data"]["alerts"]
        ]

    def firing(self) -> set[tuple[str, str]]:
        """(alert, instance) of every alert firing now ("" for an alert by job)."""
        return {
            (a.name, a.labels.get("instance", "")) for a in self.alerts() if a.state == "firing"
        }

    def wait_targets_up(self, count: int, timeout: float = 20.0) -> None:
        """Until `count` targets have been scraped successfully."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = self.query(f'up{{job="{JOB}"}} == 1')
            if len(up) >= count:
                return
            time.sleep(0.2)
        raise AssertionError(f"{count} targets not up within {timeout} s:\n{self.output()}")


def promtool(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    _, tool = binaries()
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
