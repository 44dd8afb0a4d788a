"""The operator's alert rules (deploy/prometheus/) and Grafana dashboard (deploy/grafana/):
promtool checks and unit-tests the rules, every alert has its runbook, the dashboard is
what its generator writes, and both only use metrics Tally documents. (Against real
servers: tests/e2e/test_monitoring.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]
from promserver import (
    DEPLOY,
    DOCS,
    RULE_TESTS,
    RULES,
    alerts,
    documented_metrics,
    promtool,
    shrunk_rules,
    unknown_metrics,
)

from tools import grafana_dashboard

# the first test to call promtool may install Debian's prometheus first (tests/promserver.py)
pytestmark = pytest.mark.timeout(900)


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    """`promtool check rules` passes on the rules, and on the shrunk copy the end-to-end
    tests load."""
    for path in (RULES, shrunk_rules(tmp_path / "rules.yml")):
        result = promtool("check", "rules", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_rules_unit_tests() -> None:
    """`promtool test rules` on the unit tests committed beside the rules: each alert
    fires where it should and stays silent where it should not."""
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_fires_and_stays_silent_in_the_unit_tests() -> None:
    """Each alert has a unit test where it fires and one where it must not."""
    doc = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    cases = [case for test in doc["tests"] for case in test["alert_rule_test"]]
    for rule in alerts():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} never fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} always fires"


def test_every_alert_has_a_summary_a_description_and_a_runbook() -> None:
    """Summary, description and severity on every alert, and its runbook: a section of
    docs/deploying.md named after it."""
    headings = {
        line.removeprefix("#### ").strip()
        for line in DOCS.read_text(encoding="utf-8").splitlines()
        if line.startswith("#### ")
    }
    for rule in alerts():
        name = rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"], name
        assert annotations["description"], name
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        assert annotations["runbook"] == f"docs/deploying.md#{name.lower()}", name
        assert name in headings, f"docs/deploying.md has no '#### {name}' runbook"


def test_rules_and_dashboard_read_only_documented_metrics() -> None:
    """Every metric a rule or a panel reads is one Tally exports and documents (`up` is
    Prometheus's own)."""
    known = documented_metrics() | {"up"}
    exprs = [rule["expr"] for rule in alerts()] + grafana_dashboard.queries()
    for expr in exprs:
        unknown = unknown_metrics(expr, known)
        assert not unknown, f"{expr} reads {unknown}, which docs/deploying.md does not list"


def test_dashboard_is_what_its_generator_writes() -> None:
    """deploy/grafana/tally.json is up to date with tools/grafana_dashboard.py (run it
    to write it again)."""
    committed = (DEPLOY / "grafana" / "tally.json").read_text(encoding="utf-8")
    assert committed == grafana_dashboard.render(), (
        "deploy/grafana/tally.json is stale: .venv/bin/python -m tools.grafana_dashboard"
    )
    model = grafana_dashboard.build()
    panels = model["panels"]
    assert isinstance(panels, list)
    titles = {panel["title"] for panel in panels}
    for wanted in (
        "Requests by route",
        "Commit duration",
        "Limiter decisions",
        "Sign-ins",
        "Alert deliveries",
    ):
        assert wanted in titles
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
