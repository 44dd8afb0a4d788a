"""What the counter page and the workspace overview show of a period (tally.periods):
the choice of periods as links (the period is in the URL), the totals and their change
against the previous period, and the chart, drawn as SVG (tally.charts)."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from tally import charts, periods
from tally.periods import Period


def chosen(request: Request, now: float, tz: tzinfo) -> Period:
    """The period of the request's query (BadRequest, shown as a 400 page, if it names
    none)."""
    q = request.query_params
    return periods.parse({k: q[k] for k in ("period", "from", "to") if k in q}, now, tz)


def choices(period: Period, **keep: str) -> list[dict[str, Any]]:
    """The period links, each keeping the query's other parameters (`keep`)."""
    kept = {k: v for k, v in keep.items() if v}
    return [
        {
            "key": key,
            "label": label,
            "href": "?" + urlencode({**kept, "period": key}),
            "current": key == period.key,
        }
        for key, label in periods.PERIODS.items()
    ]


def numbers(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The period's up and down, each with its change against the previous period."""
    out = []
    for key, label in (("up", "Up"), ("down", "Down")):
        change = summary["change"][key]
        percent = change["percent"]
        out.append(
            {
                "key": key,
                "label": label,
                "value": summary[key],
                "previous": summary["previous"][key],
                "diff": change["diff"],
                "percent": "new" if percent is None and change["diff"] else percent,
                "trend": "up" if change["diff"] > 0 else "down" if change["diff"] < 0 else "same",
            }
        )
    return out


def context(
    period: Period, summary: dict[str, Any], chart: dict[str, Any], **keep: str
) -> dict[str, Any]:
    """The template context of `_period.html`."""
    labels = chart["labels"]
    return {
        "period": period,
        "period_query": urlencode(period.query()),
        "period_choices": choices(period, **keep),
        "period_numbers": numbers(summary),
        "period_svg": charts.period_svg(
            chart, f"Ups and downs per {chart['unit']}, {period.dates}"
        ),
        "period_axis": [labels[0], labels[len(labels) // 2], labels[-1]] if labels else [],
        "timezone": periods.zone_name(period.tz),
    }


def payload(period: Period, summary: dict[str, Any], chart: dict[str, Any]) -> dict[str, Any]:
    """The period as the JSON answers carry it."""
    return {**periods.describe(period), **summary, "chart": chart}
