"""tally.charts: the counter page's series fit the counter's data, in one label format."""

from __future__ import annotations

import re
from datetime import UTC
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from tally import charts

NOW = 1_765_000_000.0  # 2025-12-06 05:46:40 UTC
HOUR = int(NOW // 3600)
DAY_LABEL = re.compile(r"^\d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)$")
HOUR_LABEL = re.compile(DAY_LABEL.pattern[:-1] + r" \d\d:00$")


def test_a_new_counter_gets_the_minimum_ranges() -> None:
    """Created a minute ago: 12 hours and 14 days, its counts in the last bar."""
    s = charts.series([(HOUR, 3, 1)], NOW, UTC, born=NOW - 60)
    assert len(s["hourly"]["up"]) == 12
    assert len(s["daily"]["up"]) == 14
    assert s["hourly"]["up"][-1] == 3
    assert s["daily"]["down"][-1] == 1
    assert s["hourly"]["labels"][-1] == "6 Dec 05:00"
    assert s["daily"]["labels"][-1] == "6 Dec"


def test_ranges_start_at_the_counter_and_stop_at_the_maximum() -> None:
    """A counter of 30 hours and 20 days shows exactly those; a year-old one 48 h, 90 d."""
    s = charts.series([], NOW, UTC, born=NOW - 29 * 3600)
    assert len(s["hourly"]["up"]) == 30
    assert len(s["daily"]["up"]) == 14
    s = charts.series([(HOUR - 19 * 24, 1, 0)], NOW, UTC, born=NOW)  # an imported bucket
    assert len(s["daily"]["up"]) == 20
    assert s["daily"]["up"][0] == 1
    s = charts.series([], NOW, UTC, born=NOW - 365 * 86400)
    assert (len(s["hourly"]["up"]), len(s["daily"]["up"])) == (48, 90)


@given(
    st.lists(st.tuples(st.integers(HOUR - 24 * 400, HOUR), st.integers(0, 9), st.integers(0, 9))),
    st.sampled_from([UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")]),
    st.integers(0, 400 * 86400),
)
def test_labels_have_one_format_and_series_their_length(
    buckets: list[tuple[int, int, int]], tz: ZoneInfo, age: int
) -> None:
    s = charts.series(buckets, NOW, tz, born=NOW - age)
    for key, pattern in (("hourly", HOUR_LABEL), ("daily", DAY_LABEL)):
        part = s[key]
        assert len(part["labels"]) == len(part["up"]) == len(part["down"])
        assert all(pattern.match(label) for label in part["labels"]), part["labels"]
    # every bucket of the hourly range is in it
    first = HOUR - len(s["hourly"]["up"]) + 1
    assert sum(s["hourly"]["up"]) == sum(up for hour, up, _ in buckets if hour >= first)
    assert sum(s["weekday"]["up"]) == sum(up for _, up, _ in buckets)
