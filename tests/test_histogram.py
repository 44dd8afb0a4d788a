"""Histogram: each observation in the first bucket that holds it, cumulative when read."""

from __future__ import annotations

from tally.histogram import Histogram


def test_buckets_are_cumulative_with_inclusive_bounds() -> None:
    """A value equal to a bound falls in that bound's bucket (Prometheus' `le`)."""
    h = Histogram((1, 5, 10))
    for value in (0.5, 1, 3, 5, 7, 11, 100):
        h.observe(value)
    assert h.buckets() == [("1", 2), ("5", 4), ("10", 5), ("+Inf", 7)]
    assert h.sum == 127.5
