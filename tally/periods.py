"""Periods of a counter's (or a workspace's) history: today, yesterday, the last 7, 30 or
90 days, the last 12 months, or a custom range of dates, in a time zone.

A period is a run of whole local days, `first` to `last`. Its buckets are those `stats`
puts on those days (tally/stats.py): a bucket belongs to the local date of its start
instant. That date never goes back as the hours go on (a zone's offset never falls
back across a local midnight), so a period's buckets are one range of UTC hour
indexes, `start_hour <= hour < end_hour`, which one indexed query reads. In a zone
whose offset is not whole hours a bucket straddling midnight counts on the day it
starts, as in `stats`.

The previous period is the same number of days just before; today and the periods
that end today are compared with whole days (today so far against all of yesterday).
Charts have a bar per hour (periods of one or two days), per day (up to 92 days) or per
ISO week (Monday first; the first and last weeks cut to the period).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from tally.errors import BadRequest

__all__ = ["PERIODS", "Period", "check_zone", "parse", "zone"]

_EPOCH = date(1970, 1, 1)
# the periods' keys in the URL (?period=), with their labels; "custom" is ?from=&to=
PERIODS: dict[str, str] = {
    "today": "Today",
    "yesterday": "Yesterday",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "12m": "Last 12 months",
}
DEFAULT = "7d"
MAX_DAYS = 800  # a custom range: buckets are kept at least 400 days, two of those to compare
EARLIEST = date(2000, 1, 1)
HOURLY_DAYS = 2  # at most this many days: a bar per hour
DAILY_DAYS = 92  # at most this many: a bar per day; more: a bar per week
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
MAX_ZONE = 64


def zone(name: str, default: tzinfo = UTC) -> tzinfo:
    """The zone of a workspace's setting ("" or an unknown name: `default`)."""
    if not name:
        return default
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return default


def zone_name(tz: tzinfo) -> str:
    return str(getattr(tz, "key", None) or tz.tzname(None) or "UTC")


def check_zone(text: str) -> str:
    """A time zone setting as stored: an IANA name of the tz database, or "" (the
    server's); BadRequest for anything else."""
    name = text.strip()
    if not name:
        return ""
    if len(name) > MAX_ZONE or name not in _zones():
        raise BadRequest(
            f"{name[:MAX_ZONE]!r} is no time zone: use an IANA name such as Europe/Berlin, "
            "America/New_York or UTC"
        )
    return name


_ZONES: frozenset[str] = frozenset()


def _zones() -> frozenset[str]:
    global _ZONES
    if not _ZONES:
        _ZONES = frozenset(available_timezones()) | {"UTC"}
    return _ZONES


def zone_names() -> list[str]:
    """Every name `check_zone` takes, sorted (the settings form's suggestions)."""
    return sorted(_zones())


def local_day(hour: int, tz: tzinfo) -> date:
    """The local date of the start of UTC hour `hour` (the day `stats` counts it on)."""
    return datetime.fromtimestamp(hour * 3600, tz).date()


def first_hour(day: date, tz: tzinfo) -> int:
    """The first UTC hour index whose start falls on local date `day` or later."""
    guess = (day - _EPOCH).days * 24
    # an offset is within +-26 h: the hour 27 before is on an earlier local day, the hour
    # 27 after on this one or later; local dates never go back (tests/test_periods.py
    # checks every zone), so a binary search between them finds the first
    low, high = guess - 27, guess + 27
    while high - low > 1:
        middle = (low + high) // 2
        if local_day(middle, tz) < day:
            low = middle
        else:
            high = middle
    return high


@dataclass(frozen=True, slots=True)
class Period:
    key: str  # a key of PERIODS, or "custom"
    first: date  # local dates, both included
    last: date
    tz: tzinfo
    start_hour: int  # UTC hour indexes: start_hour <= hour < end_hour
    end_hour: int

    @classmethod
    def of(cls, key: str, first: date, last: date, tz: tzinfo) -> Period:
        return cls(key, first, last, tz, first_hour(first, tz), first_hour(last + _DAY, tz))

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def unit(self) -> str:
        if self.days <= HOURLY_DAYS:
            return "hour"
        return "day" if self.days <= DAILY_DAYS else "week"

    def previous(self) -> Period:
        """The period of as many days just before this one."""
        last = self.first - _DAY
        return Period.of(self.key, last - timedelta(days=self.days - 1), last, self.tz)

    @property
    def label(self) -> str:
        if self.key in PERIODS:
            return PERIODS[self.key]
        return f"{day_label(self.first, True)} to {day_label(self.last, True)}"

    @property
    def dates(self) -> str:
        """The period's dates, as a sentence's words."""
        if self.first == self.last:
            return day_label(self.first, True)
        return f"{day_label(self.first, True)} to {day_label(self.last, True)}"

    def query(self) -> dict[str, str]:
        """The URL's parameters naming this period."""
        if self.key == "custom":
            return {"from": self.first.isoformat(), "to": self.last.isoformat()}
        return {"period": self.key}

    def bars(self) -> tuple[list[str], list[int]]:
        """The chart's bars: each one's label and first UTC hour, in order."""
        if self.unit == "hour":
            hours = range(self.start_hour, self.end_hour)
            labels = []
            for hour in hours:
                local = datetime.fromtimestamp(hour * 3600, self.tz)
                text = f"{local.hour:02d}:{local.minute:02d}"
                labels.append(text if self.days == 1 else f"{day_label(local.date())} {text}")
            return labels, list(hours)
        starts: list[date] = []
        day = self.first
        while day <= self.last:
            starts.append(day)
            day += _DAY if self.unit == "day" else timedelta(days=7 - day.weekday())
        labels = [day_label(d, self.unit == "week" and d.year != self.last.year) for d in starts]
        return labels, [first_hour(d, self.tz) for d in starts]


_DAY = timedelta(days=1)


def day_label(day: date, year: bool = False) -> str:
    text = f"{day.day} {MONTHS[day.month - 1]}"
    return f"{text} {day.year}" if year else text


def _date(text: str, name: str) -> date:
    try:
        day = date.fromisoformat(text) if len(text) == 10 and text.isascii() else None
    except ValueError:
        day = None
    if day is None:
        raise BadRequest(f"{name} must be a date as YYYY-MM-DD")
    return day


def parse(query: Mapping[str, str], now: float, tz: tzinfo) -> Period:
    """The period a URL's query names: `period` (a key of PERIODS; DEFAULT if absent), or
    `from` and `to` (local dates, both included). BadRequest for anything else."""
    today = datetime.fromtimestamp(now, tz).date()
    start, end = query.get("from", ""), query.get("to", "")
    key = query.get("period", "custom" if start or end else DEFAULT)
    if key == "custom":
        first, last = _date(start, "from"), _date(end, "to")
        if last < first:
            raise BadRequest("the range must end on or after its first day")
        if first < EARLIEST or last > today + _DAY:
            raise BadRequest(f"a range must be within {EARLIEST.isoformat()} and tomorrow")
        if (last - first).days + 1 > MAX_DAYS:
            raise BadRequest(f"a range may be {MAX_DAYS} days long at most")
        return Period.of(key, first, last, tz)
    if key == "today":
        return Period.of(key, today, today, tz)
    if key == "yesterday":
        return Period.of(key, today - _DAY, today - _DAY, tz)
    if key in ("7d", "30d", "90d"):
        return Period.of(key, today - timedelta(days=int(key[:-1]) - 1), today, tz)
    if key == "12m":
        try:
            year_ago = today.replace(year=today.year - 1)
        except ValueError:  # 29 February
            year_ago = today.replace(year=today.year - 1, day=28)
        return Period.of(key, year_ago + _DAY, today, tz)
    raise BadRequest(f"period must be one of {', '.join(PERIODS)}, or from and to dates")


@dataclass(frozen=True, slots=True)
class Totals:
    up: int = 0
    down: int = 0

    @property
    def value(self) -> int:
        return self.up - self.down


def totals(buckets: Iterable[tuple[int, int, int]], period: Period) -> Totals:
    """The sums of the buckets in `period`."""
    up = down = 0
    for hour, u, d in buckets:
        if period.start_hour <= hour < period.end_hour:
            up += u
            down += d
    return Totals(up, down)


def change(now: int, before: int) -> dict[str, Any]:
    """`now` against `before`: the difference, and the percentage (None from 0)."""
    diff = now - before
    percent = None if before == 0 else round(diff * 100 / abs(before), 1)
    return {"diff": diff, "percent": percent}


def summary(buckets: list[tuple[int, int, int]], period: Period) -> dict[str, Any]:
    """The period's totals, the previous period's, and the change of each, from the
    buckets of both (more are ignored)."""
    current, before = totals(buckets, period), totals(buckets, period.previous())
    return {
        "up": current.up,
        "down": current.down,
        "previous": {"up": before.up, "down": before.down},
        "change": {"up": change(current.up, before.up), "down": change(current.down, before.down)},
    }


def chart(buckets: Iterable[tuple[int, int, int]], period: Period) -> dict[str, Any]:
    """The period's chart: a bar per hour, day or week (Period.unit)."""
    labels, starts = period.bars()
    up, down = [0] * len(starts), [0] * len(starts)
    for hour, u, d in buckets:
        if period.start_hour <= hour < period.end_hour:
            i = bisect.bisect_right(starts, hour) - 1
            up[i] += u
            down[i] += d
    return {"unit": period.unit, "labels": labels, "up": up, "down": down}


def describe(period: Period) -> dict[str, Any]:
    """The period as the JSON answers name it."""
    return {
        "key": period.key,
        "from": period.first.isoformat(),
        "to": period.last.isoformat(),
        "timezone": zone_name(period.tz),
        "unit": period.unit,
    }
