"""Tests for the in-process GCRA rate limiter (tally.ratelimit).

Times are explicit `now` values, never sleeps. Where exact arithmetic matters, periods and
times are dyadic (exact in binary floating point) or the check allows for one clock tick,
which the limiter documents as under 1e-6 of an emission interval.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tally.ratelimit import Decision, MemoryRateLimiter

# Relative slack for durations converted back from ticks to float seconds.
REL = 1e-9

limits = st.integers(min_value=1, max_value=12)
periods = st.one_of(
    st.sampled_from([0.5, 1.0, 3.0, 60.0]),
    st.floats(min_value=0.01, max_value=100.0),
)
starts = st.floats(min_value=0.0, max_value=1e5)


@st.composite
def histories(
    draw: st.DrawFn, keys: tuple[Hashable, ...] = ("a",)
) -> tuple[int, float, list[tuple[Hashable, float]]]:
    """A limiter shape and a list of (key, now) hits with non-decreasing times."""
    limit = draw(limits)
    period = draw(periods)
    step = period / limit
    gaps = st.one_of(
        st.just(0.0),
        st.floats(min_value=0.0, max_value=2 * step),
        st.floats(min_value=0.0, max_value=2 * period),
    )
    now = draw(starts)
    hits: list[tuple[Hashable, float]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=80))):
        now += draw(gaps)
        hits.append((draw(st.sampled_from(keys)), now))
    return limit, period, hits


def drain(limiter: MemoryRateLimiter, key: Hashable, now: float) -> int:
    """Hit `key` at `now` until rejected; return how many were admitted."""
    admitted = 0
    while limiter.hit(key, now).allowed:
        admitted += 1
        assert admitted <= limiter.limit
    return admitted


def check_decision(d: Decision, limit: int, period: float) -> None:
    """The invariants every Decision satisfies, whatever the history."""
    step = period / limit
    assert d.limit == limit
    assert 0.0 <= d.reset_after <= period * (1 + REL)
    if d.allowed:
        assert d.retry_after == 0.0
        assert 0 <= d.remaining <= limit - 1
        # `remaining` and `reset_after` describe the same backlog: N - remaining intervals,
        # rounded up to a whole interval.
        assert (limit - d.remaining - 1) * step < d.reset_after * (1 + REL)
        assert d.reset_after <= (limit - d.remaining) * step * (1 + REL)
    else:
        assert d.remaining == 0
        assert 0.0 < d.retry_after <= step * (1 + REL)
        assert d.retry_after <= d.reset_after


def test_burst_of_limit_is_admitted_then_rejected() -> None:
    """A fresh key gets exactly `limit` at once; the next waits period/limit."""
    limiter = MemoryRateLimiter(600, 60.0)
    for i in range(600):
        d = limiter.hit("k", 1000.0)
        assert d.allowed
        assert d.remaining == 599 - i
        assert d.retry_after == 0.0
    d = limiter.hit("k", 1000.0)
    assert not d.allowed
    assert d.remaining == 0
    assert d.retry_after == pytest.approx(0.1, rel=1e-6)
    assert d.reset_after == pytest.approx(60.0, rel=1e-6)


@settings(max_examples=100, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=2000),
    period=st.floats(min_value=1e-3, max_value=1e5),
    t0=st.floats(min_value=0.0, max_value=1e7),
)
def test_burst_is_exact_at_any_clock_value(limit: int, period: float, t0: float) -> None:
    """At any clock value, exactly `limit` are admitted at once (no float drift)."""
    limiter = MemoryRateLimiter(limit, period)
    assert drain(limiter, ("/up", 7), t0) == limit
    d = limiter.hit(("/up", 7), t0)
    assert not d.allowed
    assert d.retry_after == pytest.approx(period / limit, rel=1e-6)


def test_refill_admits_one_per_interval() -> None:
    """After a burst, each period/limit seconds of waiting buys exactly one more request."""
    limiter = MemoryRateLimiter(600, 60.0)
    assert drain(limiter, "k", 1000.0) == 600
    assert drain(limiter, "k", 1000.05) == 0
    assert drain(limiter, "k", 1000.1) == 1
    assert drain(limiter, "k", 1000.2) == 1
    assert drain(limiter, "k", 1000.5) == 3
    assert drain(limiter, "k", 1060.5) == 600


def test_refill_is_exact_on_dyadic_times() -> None:
    """With exactly representable times, refill happens at exactly period/limit."""
    limiter = MemoryRateLimiter(4, 2.0)  # one every 0.5 s
    assert drain(limiter, "k", 8.0) == 4
    assert not limiter.hit("k", 8.5 - 2**-30).allowed
    d = limiter.hit("k", 8.5)
    assert d.allowed
    assert d.remaining == 0
    assert d.reset_after == 2.0
    assert not limiter.hit("k", 8.5).allowed


@settings(max_examples=200, deadline=None)
@given(
    limit=limits,
    period=periods,
    t0=starts,
    wait=st.floats(min_value=0.0, max_value=0.999),
)
def test_retry_after_and_reset_after_are_accurate(
    limit: int, period: float, t0: float, wait: float
) -> None:
    """retry_after is when one more is admitted; reset_after is when a full burst is back."""
    step = period / limit
    slack = step * 1e-5  # ten ticks, far above float rounding at these magnitudes
    limiter = MemoryRateLimiter(limit, period)
    drain(limiter, "k", t0)
    now = t0 + wait * step
    d = limiter.hit("k", now)
    assert not d.allowed
    if d.retry_after > slack:
        assert not limiter.hit("k", now + d.retry_after - slack).allowed
    assert limiter.hit("k", now + d.retry_after + slack).allowed

    fresh = MemoryRateLimiter(limit, period)
    drain(fresh, "k", t0)
    d = fresh.hit("k", now)
    assert drain(fresh, "k", now + d.reset_after + slack) == limit


@settings(max_examples=300, deadline=None)
@given(histories(keys=("a", "b", ("c", 1))))
def test_admissions_per_window_are_bounded(
    history: tuple[int, float, list[tuple[Hashable, float]]],
) -> None:
    """Admissions obey N + floor(W*N/P + 1e-6) per span W, so at most 2N per period.

    Proof sketch: every admission moves the key's TAT forward by one interval T = P/N and a
    hit is admitted only while TAT - now <= (N - 1) T. If m hits are admitted from time a to
    time b, the TAT before the last is >= a + (m - 1) T, hence (m - 1) T - b <= (N - 1) T -
    a, i.e. m <= N + (b - a) / T. Measuring time in ticks of T/2**20 adds at most one tick
    (under 1e-6 T) of slack. A half-open window [t, t + P) has b - a < P, so m <= 2N: the
    burst plus the refill, which is why "N + 1 per period" does NOT hold for GCRA with a
    burst of N (see test_one_period_can_hold_nearly_two_bursts).
    """
    limit, period, hits = history
    limiter = MemoryRateLimiter(limit, period)
    admitted: dict[Hashable, list[float]] = {}
    for key, now in hits:
        d = limiter.hit(key, now)
        check_decision(d, limit, period)
        if d.allowed:
            admitted.setdefault(key, []).append(now)

    rate = Fraction(limit) / Fraction(period)
    for times in admitted.values():
        for i, first in enumerate(times):
            in_period = 0
            for j in range(i, len(times)):
                span = Fraction(times[j]) - Fraction(first)
                assert j - i + 1 - limit <= math.floor(span * rate + Fraction(1, 10**6))
                if span < Fraction(period):
                    in_period += 1
            assert in_period <= 2 * limit

    # `remaining` is exact: that many more are admitted at the same instant, then none.
    end = hits[-1][1]
    for key in ("a", "b", ("c", 1)):
        d = limiter.hit(key, end)
        assert drain(limiter, key, end) == (d.remaining if d.allowed else 0)


def test_one_period_can_hold_nearly_two_bursts() -> None:
    """A burst of N plus N - 1 refills fit in one period: 2N - 1 admissions in [0, P)."""
    limiter = MemoryRateLimiter(4, 8.0)  # one every 2 s
    assert drain(limiter, "k", 0.0) == 4
    admitted = 4
    for now in (2.0, 4.0, 6.0):
        admitted += drain(limiter, "k", now)
    assert admitted == 2 * 4 - 1


def test_rejected_hits_do_not_consume_capacity() -> None:
    """Hammering a limited key does not delay its refill."""
    limiter = MemoryRateLimiter(5, 10.0)  # one every 2 s
    assert drain(limiter, "k", 0.0) == 5
    for i in range(1000):
        assert not limiter.hit("k", i * 0.001).allowed
    assert drain(limiter, "k", 2.0) == 1
    assert drain(limiter, "k", 10.0) == 4


@settings(max_examples=200, deadline=None)
@given(histories())
def test_replaying_only_admitted_hits_gives_the_same_decisions(
    history: tuple[int, float, list[tuple[Hashable, float]]],
) -> None:
    """Rejected hits leave no trace: dropping them from a history changes nothing."""
    limit, period, hits = history
    full = MemoryRateLimiter(limit, period)
    only_admitted = MemoryRateLimiter(limit, period)
    for key, now in hits:
        d = full.hit(key, now)
        if d.allowed:
            assert only_admitted.hit(key, now) == d
    end = hits[-1][1] + period / limit / 3
    for _ in range(limit + 1):
        assert full.hit("a", end) == only_admitted.hit("a", end)


def test_keys_are_independent() -> None:
    """Exhausting one key leaves others at a full burst."""
    limiter = MemoryRateLimiter(3, 3.0)
    assert drain(limiter, ("/up", "tok1"), 5.0) == 3
    assert drain(limiter, ("/up", "tok2"), 5.0) == 3
    assert drain(limiter, ("/get", "tok1"), 5.0) == 3
    assert drain(limiter, ("/up", "tok1"), 5.0) == 0
    assert len(limiter) == 3


@settings(max_examples=200, deadline=None)
@given(histories(keys=("a", "b", ("c", 1))))
def test_interleaving_keys_changes_no_decision(
    history: tuple[int, float, list[tuple[Hashable, float]]],
) -> None:
    """One shared limiter decides each key as a private limiter would (eviction included)."""
    limit, period, hits = history
    shared = MemoryRateLimiter(limit, period)
    private: dict[Hashable, MemoryRateLimiter] = {}
    for key, now in hits:
        alone = private.setdefault(key, MemoryRateLimiter(limit, period))
        assert shared.hit(key, now) == alone.hit(key, now)


def test_idle_keys_are_reclaimed_without_a_scan() -> None:
    """Keys idle for over a period are evicted a few per hit, and sweep drops the rest."""
    limiter = MemoryRateLimiter(5, 10.0)
    assert drain(limiter, "hot", 0.0) == 5  # the oldest key, and it stays busy
    for i in range(1, 1001):  # each spends its whole burst, so is limited for a full period
        assert drain(limiter, ("/up", f"10.0.{i // 256}.{i % 256}"), i * 0.001) == 5
    assert len(limiter) == 1001

    # Within the period: nothing can be evicted yet.
    assert limiter.hit("hot", 5.0).allowed
    assert len(limiter) == 1001

    # More than a period later every idle key is at full capacity, but each hit only
    # evicts a bounded number of them; "hot" is not in the way, having moved to the end.
    assert limiter.hit("hot", 11.5).allowed
    assert len(limiter) == 999
    for i in range(600):  # mostly rejected: rejected hits reclaim too
        limiter.hit("hot", 11.5 + i * 0.001)
    assert len(limiter) == 1

    limiter.hit("other", 12.0)
    assert limiter.sweep(12.0) == 0
    assert limiter.sweep(100.0) == 2
    assert len(limiter) == 0


def test_eviction_waits_for_the_theoretical_arrival_time() -> None:
    """A key is forgotten only once it is back to a full burst, not a tick earlier."""
    limiter = MemoryRateLimiter(4, 2.0)  # one every 0.5 s; a tick is 0.5 / 2**20 s
    limiter.hit("a", 0.0)  # full again at 0.5
    limiter.hit("b", 0.5 - 2**-21)  # one tick before: "a" must stay
    assert len(limiter) == 2
    limiter.hit("b", 0.5)
    assert len(limiter) == 1


def test_a_cost_of_c_cells_admits_limit_over_c() -> None:
    """Hits of cost 3 out of 600 a minute: a burst of 200, then one every 0.3 s, each
    reporting 200 as the limit."""
    limiter = MemoryRateLimiter(600, 60.0)
    for i in range(200):
        d = limiter.hit("k", 1000.0, 3)
        assert (d.allowed, d.limit, d.remaining) == (True, 200, 199 - i)
    d = limiter.hit("k", 1000.0, 3)
    assert (d.allowed, d.limit, d.remaining) == (False, 200, 0)
    assert d.retry_after == pytest.approx(0.3, rel=1e-6)
    assert d.reset_after == pytest.approx(60.0, rel=1e-6)
    assert not limiter.hit("k", 1000.25, 3).allowed
    assert limiter.hit("k", 1000.3, 3).allowed
    # the cells are the same whatever the cost: one cell is back after 0.1 s
    assert limiter.hit("k", 1000.4, 1).allowed
    assert not limiter.hit("k", 1000.4, 1).allowed


def test_a_cost_of_the_limit_admits_one_per_period() -> None:
    """The largest cost, the limit itself, still admits one request per period."""
    limiter = MemoryRateLimiter(600, 60.0)
    assert limiter.hit("k", 0.0, 600).allowed
    assert not limiter.hit("k", 59.9, 600).allowed
    assert limiter.hit("k", 60.0, 600).allowed


def test_hold_raises_the_backlog_and_never_lowers_it() -> None:
    """`hold` sets a key's backlog to what another count said, unless the key's own
    backlog is larger; at most a period."""
    limiter = MemoryRateLimiter(600, 60.0)
    limiter.hold("k", 1000.0, 59.95)  # 599.5 cells taken: no room for one more
    assert not limiter.hit("k", 1000.0).allowed
    assert not limiter.hit("k", 1000.04).allowed
    d = limiter.hit("k", 1000.06)  # 598.9 cells: room for one
    assert d.allowed
    assert d.reset_after == pytest.approx(59.99, rel=1e-6)
    limiter.hold("k", 1000.06, 1.0)  # less than its own backlog: no change
    assert not limiter.hit("k", 1000.1).allowed
    limiter.hold("fresh", 1000.0, 600.0)  # beyond a period: held at a period
    d = limiter.hit("fresh", 1000.0)
    assert not d.allowed
    assert d.reset_after == pytest.approx(60.0, rel=1e-6)
    assert not limiter.hit("fresh", 1000.09).allowed
    assert limiter.hit("fresh", 1000.11).allowed
    limiter.hold("idle", 1000.0, 0.0)  # nothing to hold: no entry
    assert len(limiter) == 2


def test_held_keys_are_reclaimed_like_hit_ones() -> None:
    """Holds evict idle keys as hits do, and a held key is evicted once its TAT passes."""
    limiter = MemoryRateLimiter(5, 10.0)
    for i in range(100):
        limiter.hold(("k", i), i * 0.001, 10.0)
    assert len(limiter) == 100
    for i in range(50):
        limiter.hold("busy", 10.1 + i * 0.001, 10.0)
    assert len(limiter) == 1


def test_sweep_keeps_keys_that_are_still_limited() -> None:
    """sweep only drops keys whose theoretical arrival time has passed."""
    limiter = MemoryRateLimiter(2, 2.0)
    limiter.hit("once", 0.0)  # back to full at 1.0
    drain(limiter, "twice", 0.0)  # back to full at 2.0
    assert limiter.sweep(0.5) == 0
    assert limiter.sweep(1.0) == 1
    assert len(limiter) == 1
    assert limiter.sweep(2.0) == 1
    assert len(limiter) == 0
    assert drain(limiter, "twice", 2.0) == 2


@pytest.mark.parametrize(
    ("limit", "period"),
    [(0, 60.0), (-1, 60.0), (1, 0.0), (1, -1.0), (1, math.nan), (1, math.inf), (1, 5e-324)],
)
def test_constructor_rejects_bad_values(limit: int, period: float) -> None:
    """limit < 1 and a period that is not a positive finite duration are ValueErrors."""
    with pytest.raises(ValueError, match=r"limit|period"):
        MemoryRateLimiter(limit, period)


def test_constructor_rejects_non_integer_limits() -> None:
    """A float or bool limit is a TypeError rather than a silently odd limiter."""
    with pytest.raises(TypeError):
        MemoryRateLimiter(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        MemoryRateLimiter(True)


def test_constructor_defaults_and_attributes() -> None:
    """The default is 600 per 60 s, and limit/period are exposed read-only."""
    limiter = MemoryRateLimiter(600)
    assert limiter.limit == 600
    assert limiter.period == 60.0
    assert len(limiter) == 0
    with pytest.raises(AttributeError):
        limiter.limit = 5  # type: ignore[misc]
