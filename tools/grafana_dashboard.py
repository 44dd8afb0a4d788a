"""The Grafana dashboard of deploy/grafana/tally.json, generated with Grafana's own
builder library (grafana-foundation-sdk, a dev dependency) rather than edited by hand:

    .venv/bin/python -m tools.grafana_dashboard     # writes deploy/grafana/tally.json

tests/test_monitoring.py checks that the committed JSON is what this writes, and
tests/e2e/test_monitoring.py that every query here returns data from a real server.
Queries take two variables: `$datasource` (a Prometheus data source) and `$instance`
(the nodes to show, all by default); the scrape job is assumed to be named "tally", as
in deploy/prometheus/tally.rules.yml.
"""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableOption,
    VariableRefresh,
)

OUTPUT = Path(__file__).parents[1] / "deploy" / "grafana" / "tally.json"
UID = "tally-overview"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
NODES = 'instance=~"$instance"'
RATE = "$__rate_interval"


LATENCY = "tally_http_request_duration_seconds_bucket"
NOT_STREAMS = ', route!~".*/stream"'  # a live stream's "latency" is its whole life


def rate(metric: str, selector: str = "") -> str:
    """`rate(metric{the chosen nodes, selector}[$__rate_interval])`."""
    return f"rate({metric}{{{NODES}{selector}}}[{RATE}])"


def quantile(q: str, metric: str, by: str = "le", selector: str = "") -> str:
    return f"histogram_quantile({q}, sum by ({by}) ({rate(metric, selector)}))"


# (title, unit, [(PromQL, legend)]) per panel, in rows; `stat:` titles are single numbers
Panel = tuple[str, str, list[tuple[str, str]]]
ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Requests",
        [
            (
                "Requests by route",
                "reqps",
                [
                    (
                        f"sum by (route) ({rate('tally_http_requests_total')})",
                        "{{route}}",
                    )
                ],
            ),
            (
                "Answers by status",
                "reqps",
                [
                    (
                        f"sum by (status) ({rate('tally_http_requests_total')})",
                        "{{status}}",
                    )
                ],
            ),
            (
                "Latency p99 by route (live streams left out)",
                "s",
                [
                    (
                        quantile("0.99", LATENCY, "route, le", NOT_STREAMS),
                        "{{route}}",
                    )
                ],
            ),
            (
                "Latency p50 by route (live streams left out)",
                "s",
                [
                    (
                        quantile("0.5", LATENCY, "route, le", NOT_STREAMS),
                        "{{route}}",
                    )
                ],
            ),
        ],
    ),
    (
        "Group commit",
        [
            (
                "Group commits",
                "ops",
                [
                    (f"sum({rate('tally_batches_committed_total')})", "committed"),
                    (f"sum({rate('tally_batches_failed_total')})", "failed"),
                    (f"sum({rate('tally_store_errors_total')})", "store errors"),
                ],
            ),
            (
                "Commit duration",
                "s",
                [
                    (
                        quantile("0.99", "tally_commit_duration_seconds_bucket"),
                        "p99",
                    ),
                    (
                        quantile("0.5", "tally_commit_duration_seconds_bucket"),
                        "p50",
                    ),
                ],
            ),
            (
                "Commit size (average per commit)",
                "short",
                [
                    (
                        f"sum({rate('tally_batch_changes_sum')}) / "
                        f"sum({rate('tally_batch_changes_count')})",
                        "counters changed",
                    ),
                    (
                        f"sum({rate('tally_batch_requests_sum')}) / "
                        f"sum({rate('tally_batch_requests_count')})",
                        "requests waiting",
                    ),
                ],
            ),
            (
                "Changes not yet committed",
                "short",
                [(f"tally_pending_changes{{{NODES}}}", "{{instance}}")],
            ),
        ],
    ),
    (
        "Rate limit",
        [
            (
                "Limiter decisions",
                "ops",
                [
                    (
                        f"sum({rate('tally_ratelimit_rejections_total')})",
                        "refused (429)",
                    ),
                    (f"sum({rate('tally_ratelimit_redis_hits_total')})", "by Redis"),
                    (
                        f"sum({rate('tally_ratelimit_redis_reserved_hits_total')})",
                        "from reserved cells",
                    ),
                    (
                        f"sum({rate('tally_ratelimit_redis_blocked_hits_total')})",
                        "blocked without a call",
                    ),
                ],
            ),
            (
                "Nodes on their own limiter (Redis lost)",
                "short",
                [
                    (
                        f"max by (instance) (tally_ratelimit_redis_fallback{{{NODES}}})",
                        "{{instance}}",
                    )
                ],
            ),
        ],
    ),
    (
        "Nodes and streams",
        [
            ("stat:Nodes answering scrapes", "short", [('count(up{job="tally"} == 1)', "nodes")]),
            ("stat:Live nodes (heartbeats)", "short", [("max(tally_nodes_live)", "nodes")]),
            ("stat:Live streams", "short", [(f"sum(tally_streams_open{{{NODES}}})", "streams")]),
            (
                "Live streams",
                "short",
                [
                    (f"sum by (instance) (tally_streams_open{{{NODES}}})", "{{instance}} open"),
                    (
                        f"sum({rate('tally_stream_events_total')})",
                        "events/s sent",
                    ),
                ],
            ),
        ],
    ),
    (
        "Website, alerts and disk",
        [
            (
                "Sign-ins",
                "ops",
                [
                    (
                        f"sum by (result) ({rate('tally_signins_total')})",
                        "{{result}}",
                    )
                ],
            ),
            (
                "Emails",
                "ops",
                [(f"sum by (result) ({rate('tally_mails_total')})", "{{result}}")],
            ),
            (
                "Alert deliveries",
                "ops",
                [(f"sum by (result) ({rate('tally_alert_deliveries_total')})", "{{result}}")],
            ),
            (
                "SQLite disk free",
                "percentunit",
                [
                    (
                        f"tally_database_disk_free_bytes{{{NODES}}} / "
                        f"tally_database_disk_size_bytes{{{NODES}}}",
                        "{{instance}}",
                    )
                ],
            ),
        ],
    ),
]


def queries() -> list[str]:
    """Every PromQL expression of the dashboard, as written (with `$instance` and
    `$__rate_interval`)."""
    return [expr for _, panels in ROWS for _, _, targets in panels for expr, _ in targets]


def _targets(targets: list[tuple[str, str]]) -> list[prometheus.Dataquery]:
    return [
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i))
        for i, (expr, legend) in enumerate(targets)
    ]


def _panel(
    panel_id: int, title: str, unit: str, targets: list[tuple[str, str]]
) -> Builder[model.Panel]:
    if title.startswith("stat:"):
        single = stat.Panel().id(panel_id).title(title.removeprefix("stat:")).span(4).height(5)
        for target in _targets(targets):
            single.with_target(target)
        return single.unit(unit).datasource(DATASOURCE)
    legend = (
        common_builder.VizLegendOptions()
        .show_legend(True)
        .display_mode(common.LegendDisplayMode.LIST)
    )
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(title)
        .unit(unit)
        .span(12)
        .height(8)
        .datasource(DATASOURCE)
        .legend(legend)
        .min(0)
    )
    for target in _targets(targets):
        panel.with_target(target)
    return panel


def build() -> dict[str, object]:
    """The dashboard as Grafana's JSON model."""
    datasource = db.DatasourceVariable("datasource").label("Data source").type("prometheus")
    instance = (
        db.QueryVariable("instance")
        .label("Node")
        .datasource(DATASOURCE)
        .query('label_values(up{job="tally"}, instance)')
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(VariableOption(text="All", value="$__all", selected=True))
    )
    dashboard = (
        db.Dashboard("Tally")
        .uid(UID)
        .description("A Tally cluster: requests, group commit, limits, nodes, website.")
        .tags(["tally"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_variable(datasource)
        .with_variable(instance)
    )
    ids = iter(range(1, 1000))
    for title, panels in ROWS:
        dashboard.with_row(db.Row(title).id(next(ids)))
        for panel in panels:
            dashboard.with_panel(_panel(next(ids), *panel))
    model = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    assert isinstance(model, dict)
    return model


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
