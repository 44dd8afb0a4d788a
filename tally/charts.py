"""The counter page's chart series, from a counter's hourly buckets.

Hourly: up to the last 48 hours; daily: up to the last 90 days; each starts where the
counter's data starts (its creation, or an earlier imported bucket), but shows at least
12 hours and 14 days, so a new counter's first bars are bars and not a sliver at the
right edge. Hour of day and weekday: all of the counter's history. Every date is in the
server's time zone (TALLY_TIMEZONE, the zone of `stats`), labelled in one format: "7 Dec"
for a day, "7 Dec 14:00" for an hour.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from markupsafe import Markup, escape

HOURS, MIN_HOURS = 48, 12
DAYS, MIN_DAYS = 90, 14
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
HOURS_OF_DAY = [f"{h:02d}:00" for h in range(24)]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def since_hour(now: float) -> int:
    """The first hour the hourly and daily charts need."""
    return int(now // 3600) - (DAYS + 1) * 24


def series(
    buckets: list[tuple[int, int, int]], now: float, tz: tzinfo, born: float | None = None
) -> dict[str, Any]:
    """The four series of the counter page. `born`: when the counter's data starts (its
    creation time); the hourly and daily ranges start there, or at an earlier bucket."""
    last_hour = int(now // 3600)
    first_data_hour = min((hour for hour, _, _ in buckets), default=last_hour)
    if born is not None:
        first_data_hour = min(first_data_hour, int(born // 3600))
    first_hour = max(last_hour - HOURS + 1, min(first_data_hour, last_hour - MIN_HOURS + 1))
    hours = last_hour - first_hour + 1
    today = datetime.fromtimestamp(now, tz).date()
    first_data_day = datetime.fromtimestamp(first_data_hour * 3600, tz).date()
    first_day = max(
        today - timedelta(days=DAYS - 1), min(first_data_day, today - timedelta(days=MIN_DAYS - 1))
    )
    days = (today - first_day).days + 1
    hourly_up, hourly_down = [0] * hours, [0] * hours
    daily_up, daily_down = [0] * days, [0] * days
    hod_up, hod_down = [0] * 24, [0] * 24
    wd_up, wd_down = [0] * 7, [0] * 7
    for hour, up, down in buckets:
        if first_hour <= hour <= last_hour:
            hourly_up[hour - first_hour] += up
            hourly_down[hour - first_hour] += down
        local = datetime.fromtimestamp(hour * 3600, tz)
        day = (local.date() - first_day).days
        if 0 <= day < days:
            daily_up[day] += up
            daily_down[day] += down
        hod_up[local.hour] += up
        hod_down[local.hour] += down
        wd_up[local.weekday()] += up
        wd_down[local.weekday()] += down
    return {
        "hourly": {
            "labels": [_hour_label(h, tz) for h in range(first_hour, last_hour + 1)],
            "up": hourly_up,
            "down": hourly_down,
        },
        "daily": {
            "labels": [_day_label(first_day + timedelta(days=d)) for d in range(days)],
            "up": daily_up,
            "down": daily_down,
        },
        "hour_of_day": {"labels": HOURS_OF_DAY, "up": hod_up, "down": hod_down},
        "weekday": {"labels": WEEKDAYS, "up": wd_up, "down": wd_down},
    }


def _hour_label(hour: int, tz: tzinfo) -> str:
    local = datetime.fromtimestamp(hour * 3600, tz)
    return f"{_day_label(local.date())} {local.hour:02d}:00"


def _day_label(day: date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]}"


# -- a period's chart and the list's sparklines, drawn here as SVG (no script needed) --

BAR_WIDTH, CHART_HEIGHT = 10.0, 100.0


def period_svg(chart: dict[str, Any], title: str) -> Markup:
    """A period's bars (tally.periods.chart) as an SVG that stretches to its box: per
    bar, its up (blue) and down (red) side by side, each with its numbers as a tooltip.
    Labels are the page's, outside the drawing, so stretching never distorts text."""
    ups, downs, labels = chart["up"], chart["down"], chart["labels"]
    top = max([*ups, *downs, 1])
    width = BAR_WIDTH * max(len(ups), 1)
    parts = [
        f'<svg class="period-chart" viewBox="0 0 {width:g} {CHART_HEIGHT:g}" '
        f'preserveAspectRatio="none" role="img" aria-label="{escape(title)}">'
    ]
    for i, (up, down) in enumerate(zip(ups, downs, strict=True)):
        x = i * BAR_WIDTH
        tip = escape(f"{labels[i]}: {up} up, {down} down")
        for offset, count, kind in ((1.0, up, "up"), (5.0, down, "down")):
            h = CHART_HEIGHT * count / top
            parts.append(
                f'<rect class="{kind}" x="{x + offset:g}" y="{CHART_HEIGHT - h:.2f}" '
                f'width="4" height="{h:.2f}"><title>{tip}</title></rect>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def sparkline_svg(points: list[tuple[int, int]], title: str) -> Markup:
    """A counter's ups per bar of the period as a small line (its downs dashed)."""
    if not points:
        return Markup("")
    top = max([*(u for u, _ in points), *(d for _, d in points), 1])
    step = 100 / max(len(points) - 1, 1)

    def line(values: list[int]) -> str:
        return " ".join(f"{i * step:.1f},{23 - 22 * v / top:.1f}" for i, v in enumerate(values))

    ups, downs = [u for u, _ in points], [d for _, d in points]
    down_line = (
        f'<polyline class="down" points="{line(downs)}" vector-effect="non-scaling-stroke"/>'
        if any(downs)
        else ""
    )
    return Markup(
        f'<svg class="sparkline" viewBox="0 0 100 24" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(title)}"><polyline class="up" points="{line(ups)}" '
        f'vector-effect="non-scaling-stroke"/>{down_line}</svg>'
    )
