"""`Histogram`: observations counted in plain ints, cheap enough for every request.

Prometheus histograms are cumulative per bucket; this one counts each observation once,
in the first bucket whose upper bound holds it, and builds the cumulative form only when
it is scraped (`buckets`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

# seconds: from a fast in-memory answer to the 10 s a PostgreSQL call may take
LATENCY_BOUNDS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# things per group commit: counter changes, or requests waiting for it
SIZE_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """(upper bound, observations at or below it), cumulative, ending with +Inf."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else f"{bound:g}", total))
        return out
