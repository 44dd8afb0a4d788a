"""Aggregate a counter's hourly buckets into the ``/stats`` payload.

A counter keeps hourly buckets ``(hour, up, down)`` where ``hour`` is the UTC hour index
(``unix_seconds // 3600``).  :func:`summarize` turns any number of them into the JSON-ready
structure the CounterAPI V2 ``/stats`` endpoint returns.

Every bucket is attributed to the *local* date and time (in the configured zone) of its start
instant ``hour * 3600``, using the UTC offset in force at that very instant, so daylight saving
time is handled per bucket.  In zones whose offset is not a whole number of hours (for example
Asia/Kolkata, +05:30) a bucket straddles a local day boundary and is counted entirely on the day
its start falls on: day boundaries are approximate to the hour there.

Performance: the function is on a request path with up to ~10,000 buckets (400+ days), so it
never builds a ``datetime`` per bucket.  The only per-bucket work is adding the counts into one
row per UTC day (24 hourly slots for ``up``, 24 for ``down``).  Each row is then moved onto local
time with the day's *shift*, ``floor(utc_offset / 1 h)``: the local hour index of UTC hour ``h``
is ``h + shift`` (exact for any offset, including ones with minutes), and hour of day, local day
number and weekday follow by integer arithmetic.  The shift is a constant for a
:class:`datetime.timezone`; for a :class:`zoneinfo.ZoneInfo` it costs about one ``datetime`` per
distinct UTC day (see :class:`_DayShifts`); any other ``tzinfo`` gets 24 per distinct UTC day.
``today`` and ``this_week`` are computed hour by hour over the at most nine UTC days that can
overlap the current local week.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["summarize"]

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_ONE_HOUR = timedelta(hours=1)
# 1970-01-01 (local day number 0) was a Thursday; with Monday == 0 its weekday is 3.
_EPOCH_WEEKDAY = 3

HOUR_KEYS: tuple[str, ...] = tuple(f"{hour:02d}" for hour in range(24))
WEEKDAY_KEYS: tuple[str, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
QUARTER_KEYS: tuple[str, ...] = ("q1", "q2", "q3", "q4")


def _shift_at(hour: int, tz: tzinfo) -> int:
    """Whole hours to add to UTC hour index ``hour`` to get its local hour index."""
    offset = datetime.fromtimestamp(hour * 3600, tz).utcoffset()
    if offset is None:  # a tzinfo answering "naive": datetime treats that like UTC
        return 0
    # Floor division, so e.g. -03:30 gives -4: 00:00 UTC is 20:30 local, local hour 20.
    return offset // _ONE_HOUR


class _DayShifts:
    """``UTC day -> local hour shift`` for one zone: an ``int`` for a whole day, else 24 ints.

    A :class:`datetime.timezone` has one constant offset.  For a :class:`~zoneinfo.ZoneInfo` the
    offset is sampled at the start of the UTC day and at the start of the next one (samples are
    shared between neighbouring days); if the two agree the whole day gets one shift, otherwise
    (a transition day) each hour is computed on its own.  That is exact unless a zone changes its
    offset twice within 24 hours and comes back to the old one; no zone in the tz database does
    (the shortest gap between two offset changes anywhere in it is over 95 hours).  Any other
    ``tzinfo`` is an unknown quantity, so for it every hour is computed.
    """

    __slots__ = ("at_midnight", "cache", "fixed", "sample", "tz")

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        offset = tz.utcoffset(None) if isinstance(tz, timezone) else None
        self.fixed = None if offset is None else offset // _ONE_HOUR
        self.sample = isinstance(tz, ZoneInfo)
        self.cache: dict[int, int | list[int]] = {}
        self.at_midnight: dict[int, timedelta | None] = {}  # UTC day -> offset at 00:00 UTC

    def _midnight_offset(self, day: int) -> timedelta | None:
        if day in self.at_midnight:
            return self.at_midnight[day]
        offset = self.at_midnight[day] = datetime.fromtimestamp(day * 86400, self.tz).utcoffset()
        return offset

    def __call__(self, day: int) -> int | list[int]:
        if self.fixed is not None:
            return self.fixed
        shifts = self.cache.get(day)
        if shifts is None:
            offset = self._midnight_offset(day) if self.sample else None
            if self.sample and offset == self._midnight_offset(day + 1):
                shifts = 0 if offset is None else offset // _ONE_HOUR
            else:
                shifts = [_shift_at(hour, self.tz) for hour in range(day * 24, day * 24 + 24)]
            self.cache[day] = shifts
        return shifts


def _pair(up: int, down: int) -> dict[str, int]:
    return {"up": up, "down": down}


def summarize(
    buckets: Iterable[tuple[int, int, int]], now: float, tz: tzinfo = UTC
) -> dict[str, Any]:
    """Build the ``/stats`` payload from hourly ``(hour, up, down)`` buckets.

    ``hour`` is the UTC hour index (unix seconds // 3600); buckets may come in any order and an
    hour may appear more than once (its rows are summed).  ``now`` is unix seconds and ``tz`` the
    zone whose local calendar is used.

    * ``today``: buckets starting on the local calendar day containing ``now``, not after ``now``.
    * ``this_week``: buckets starting in the local ISO week (Monday first) containing ``now``,
      not after ``now``.
    * ``temporal``: the whole history grouped by local hour of day, weekday and quarter; every
      key is always present.
    """
    # 1. The only per-bucket work: sum into one row per UTC day, [up x 24 hours, down x 24 hours].
    rows: dict[int, list[int]] = {}
    for hour, up, down in buckets:
        utc_day = hour // 24
        row = rows.get(utc_day)
        if row is None:
            row = rows[utc_day] = [0] * 48
        slot = hour % 24
        row[slot] += up
        row[slot + 24] += down

    # 2. Per UTC day: move the row onto local days / local hours of day.
    shifts_of = _DayShifts(tz)
    hour_up = [0] * 24
    hour_down = [0] * 24
    day_up: dict[int, int] = {}  # local day number (days since 1970-01-01) -> sums
    day_down: dict[int, int] = {}
    by_shift: dict[int, list[list[int]]] = {}  # whole-day shift -> rows, for the hour columns

    def add_day(day: int, up: int, down: int) -> None:
        if day in day_up:
            day_up[day] += up
            day_down[day] += down
        else:
            day_up[day] = up
            day_down[day] = down

    for utc_day, row in rows.items():
        shifts = shifts_of(utc_day)
        if isinstance(shifts, int):
            group = by_shift.get(shifts)
            if group is None:
                by_shift[shifts] = [row]
            else:
                group.append(row)
            # Local hour index of slot j is (utc_day + q) * 24 + j + r: slots before `split`
            # land on local day utc_day + q, the rest on the day after.
            q, r = divmod(shifts, 24)
            split = 24 - r
            add_day(utc_day + q, sum(row[:split]), sum(row[24 : 24 + split]))
            if r:
                add_day(utc_day + q + 1, sum(row[split:24]), sum(row[24 + split :]))
        else:
            for slot in range(24):
                up, down = row[slot], row[slot + 24]
                if up or down:
                    local_hour = utc_day * 24 + slot + shifts[slot]
                    hour_up[local_hour % 24] += up
                    hour_down[local_hour % 24] += down
                    add_day(local_hour // 24, up, down)

    for shift, group in by_shift.items():
        columns = [sum(column) for column in zip(*group, strict=True)]
        for slot in range(24):
            hod = (slot + shift) % 24
            hour_up[hod] += columns[slot]
            hour_down[hod] += columns[slot + 24]

    weekday_up = [0] * 7
    weekday_down = [0] * 7
    quarter_up = [0] * 4
    quarter_down = [0] * 4
    for day, up in day_up.items():
        down = day_down[day]
        weekday = (day + _EPOCH_WEEKDAY) % 7
        weekday_up[weekday] += up
        weekday_down[weekday] += down
        quarter = (date.fromordinal(day + _EPOCH_ORDINAL).month - 1) // 3
        quarter_up[quarter] += up
        quarter_down[quarter] += down

    # 3. today / this_week, hour by hour over the few UTC days that can touch this local week
    # (a UTC offset is less than a day, so a local day d only holds UTC days d - 1 .. d + 1).
    now_local = datetime.fromtimestamp(now, tz)
    today = now_local.date().toordinal() - _EPOCH_ORDINAL
    week_start = today - now_local.weekday()
    week_end = week_start + 7
    # A bucket starts "not after now" iff hour * 3600 <= now iff hour <= floor(now) // 3600.
    last_started_hour = math.floor(now) // 3600
    week_up = week_down = today_up = today_down = 0
    for utc_day in range(week_start - 1, week_end + 1):
        row = rows.get(utc_day)
        if row is None:
            continue
        shifts = shifts_of(utc_day)
        for slot in range(24):
            hour = utc_day * 24 + slot
            if hour > last_started_hour:
                break
            shift = shifts if isinstance(shifts, int) else shifts[slot]
            day = (hour + shift) // 24
            if week_start <= day < week_end:
                week_up += row[slot]
                week_down += row[slot + 24]
                if day == today:
                    today_up += row[slot]
                    today_down += row[slot + 24]

    return {
        "today": _pair(today_up, today_down),
        "this_week": _pair(week_up, week_down),
        "temporal": {
            "hours": {key: _pair(hour_up[i], hour_down[i]) for i, key in enumerate(HOUR_KEYS)},
            "weekdays": {
                key: _pair(weekday_up[i], weekday_down[i]) for i, key in enumerate(WEEKDAY_KEYS)
            },
            "quarters": {
                key: _pair(quarter_up[i], quarter_down[i]) for i, key in enumerate(QUARTER_KEYS)
            },
        },
    }


def settled_before(now: float, tz: tzinfo = UTC) -> int:
    """A UTC hour index before which a counter's buckets no longer change: one day before
    the start of the current local ISO week. Events are bucketed by the moment they were
    accepted, so only recent hours still receive them, and `today` and `this_week` never
    need an earlier bucket: the `temporal` sums of the older ones can be cached."""
    local = datetime.fromtimestamp(now, tz)
    monday = (local - timedelta(days=local.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return int(monday.timestamp()) // 3600 - 24


def add_temporal(summary: dict[str, Any], temporal: dict[str, Any]) -> dict[str, Any]:
    """`summary` with the `temporal` sums of older buckets (from `summarize`) added in."""
    merged = summary["temporal"]
    for section, pairs in temporal.items():
        into = merged[section]
        for key, pair in pairs.items():
            into[key]["up"] += pair["up"]
            into[key]["down"] += pair["down"]
    return summary
