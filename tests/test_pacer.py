"""The soak's pacing (bench/lua/pacer.lua), run in LuaJIT (as in wrk) on a simulated clock:
one wrk thread's connections, each waiting what delay() says before each request and
answered after a latency the test chooses, no server involved."""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from lupa.luajit21 import LuaRuntime  # type: ignore[import-untyped]

PACER = Path(__file__).parent.parent / "bench" / "lua" / "pacer.lua"
CONNECTIONS = 32  # one thread's share of bench/wrk.py's 64 connections
RATE = 3000.0  # requests per second: a slot every third of a millisecond
SLACK = 0.05  # seconds, as bench/lua/soak.lua
# requests a wait rounded to the millisecond can move across a second's edge (half a ms)
EDGE = 2


def pacer(rate: float, clock: Callable[[], float], slack: float = SLACK) -> Callable[[], int]:
    """pacer.lua's delay() function, in LuaJIT."""
    new = LuaRuntime().execute(PACER.read_text()).new
    return new(rate, clock, slack)  # type: ignore[no-any-return]


def sends_per_second(
    latency: Callable[[float], float], seconds: int, slack: float = SLACK
) -> list[int]:
    """Requests sent in each second of a run of `seconds` by one wrk thread paced by
    pacer.lua at RATE, `latency(t)` being the answer's delay (s) to a request sent at
    `t`. Like wrk, every connection sends its first request at once and calls delay()
    after each answer."""
    clock = 0.0
    delay = pacer(RATE, lambda: clock, slack)
    sent: Counter[int] = Counter()
    answers = [(latency(0.0), c) for c in range(CONNECTIONS)]  # (when answered, connection)
    sent[0] = CONNECTIONS
    heapq.heapify(answers)
    while answers:
        clock, conn = heapq.heappop(answers)
        at = clock + delay() / 1000
        if at >= seconds:
            continue  # the run is over: this connection is done
        sent[int(at)] += 1
        heapq.heappush(answers, (at + latency(at), conn))
    return [sent[s] for s in range(seconds)]


@pytest.mark.parametrize("latency_ms", [0.2, 2.0, 9.0])
def test_the_target_rate_is_held_whatever_the_latency(latency_ms: float) -> None:
    """With answers in 0.2 ms (the connections could send 160,000/s) or 9 ms (3,556/s),
    every second sends the target, within 1 % (the first one also the connections' first
    requests, which wrk sends unpaced)."""
    per_second = sends_per_second(lambda t: latency_ms / 1000, 5)
    assert RATE <= per_second[0] <= RATE + CONNECTIONS + EDGE, per_second
    assert all(abs(n - RATE) <= 0.01 * RATE for n in per_second[1:]), per_second


def test_no_catch_up_after_a_slow_stretch() -> None:
    """From 3 s to 5 s answers take 100 ms (the connections can send only 320/s); before
    and after, 1 ms. The slow seconds send what they can, and the seconds after it the
    target again: not the 5,360 requests the slow stretch missed, only SLACK's worth."""
    per_second = sends_per_second(lambda t: 0.1 if 3 <= t < 5 else 0.001, 10)
    before, slow, after = per_second[:3], per_second[3:5], per_second[5:]
    assert all(abs(n - RATE) <= 0.01 * RATE for n in before[1:]), per_second
    assert all(n <= CONNECTIONS / 0.1 + CONNECTIONS for n in slow), per_second
    assert after[0] <= RATE + SLACK * RATE + EDGE, per_second
    assert all(abs(n - RATE) <= 0.01 * RATE for n in after[1:]), per_second


def test_never_above_the_target_under_jitter() -> None:
    """Answers in anything from 0.1 to 12 ms at random (at times every connection waits
    for one): no second above the target by more than SLACK's worth (the first, also by
    the unpaced first requests), and the run as a whole on it within 0.5 %."""
    jitter = random.Random(7)
    per_second = sends_per_second(lambda t: jitter.uniform(0.0001, 0.012), 8)
    assert per_second[0] <= RATE * (1 + SLACK) + CONNECTIONS + EDGE, per_second
    assert all(n <= RATE * (1 + SLACK) + EDGE for n in per_second[1:]), per_second
    assert abs(sum(per_second) - 8 * RATE) <= 0.005 * 8 * RATE, per_second


def stalls(t: float) -> float:
    """Answers in 2 ms, but the server stalls for the first 20 ms of every half second:
    what is sent then is answered 2 ms after the stall."""
    into = t % 0.5
    return 0.022 - into if into < 0.02 else 0.002


def test_the_slack_keeps_short_stalls_from_costing_requests() -> None:
    """Twice a second every connection waits out a 20 ms stall, and the slots of those
    moments go by: with SLACK they are used when the answers come, and the run sends
    the target within 0.5 %; without, it falls short by over 2 %."""
    with_slack, without = sends_per_second(stalls, 6), sends_per_second(stalls, 6, 0.0)
    assert abs(sum(with_slack) - 6 * RATE) <= 0.005 * 6 * RATE, with_slack
    assert sum(without) < 0.98 * 6 * RATE, without


def test_late_slots_are_used_within_the_slack_only() -> None:
    """Each call waits for the next slot, 1 / rate after the last one handed out, in whole
    milliseconds. Called late, it hands out the slots of the last `slack` seconds without
    a wait, then goes on from there: the older ones are dropped, not made up."""
    clock = 10.0
    delay = pacer(500.0, lambda: clock, 0.01)  # a slot every 2 ms, 10 ms of slack
    assert [delay() for _ in range(4)] == [0, 2, 4, 6]  # slots at 10.000, .002, .004, .006
    clock = 11.0  # a second later: slots 10.008 to 10.988 are dropped
    assert [delay() for _ in range(8)] == [0, 0, 0, 0, 0, 0, 2, 4]  # 10.990 to 11.004
