"""The counter page's chart series, from a counter's hourly buckets.

Hourly: the last 48 hours (UTC hours, labelled in the server's time zone). Daily: the
last 90 days in the server's time zone (TALLY_TIMEZONE). Hour of day and weekday: all
of the counter's history, in that zone.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from typing import Any

HOURS = 48
DAYS = 90
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def since_hour(now: float) -> int:
    """The first hour the hourly and daily charts need."""
    return int(now // 3600) - (DAYS + 1) * 24


def series(buckets: list[tuple[int, int, int]], now: float, tz: tzinfo) -> dict[str, Any]:
    last_hour = int(now // 3600)
    first_hour = last_hour - HOURS + 1
    hourly_up, hourly_down = [0] * HOURS, [0] * HOURS
    today = datetime.fromtimestamp(now, tz).date()
    first_day = today - timedelta(days=DAYS - 1)
    daily_up, daily_down = [0] * DAYS, [0] * DAYS
    hod_up, hod_down = [0] * 24, [0] * 24
    wd_up, wd_down = [0] * 7, [0] * 7
    for hour, up, down in buckets:
        if first_hour <= hour <= last_hour:
            hourly_up[hour - first_hour] += up
            hourly_down[hour - first_hour] += down
        local = datetime.fromtimestamp(hour * 3600, tz)
        day = (local.date() - first_day).days
        if 0 <= day < DAYS:
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
            "labels": [_day_label(first_day + timedelta(days=d)) for d in range(DAYS)],
            "up": daily_up,
            "down": daily_down,
        },
        "hour_of_day": {"labels": [f"{h:02d}" for h in range(24)], "up": hod_up, "down": hod_down},
        "weekday": {"labels": WEEKDAYS, "up": wd_up, "down": wd_down},
    }


def _hour_label(hour: int, tz: tzinfo) -> str:
    return datetime.fromtimestamp(hour * 3600, tz).strftime("%d %b %H:00")


def _day_label(day: date) -> str:
    return day.isoformat()
