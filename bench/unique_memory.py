"""The memory of the in-process unique-visitor set (tally.visitors.LocalVisitors): RSS
and bytes per visitor for VISITORS distinct visitors, and the time an admit takes.

    .venv/bin/python -m bench.unique_memory [VISITORS]

Admits VISITORS (default 1,000,000) distinct visitors (one per client IP, one
User-Agent, one counter, a 24 h window) through the real `admit_now` path, each
0.05 s later than the one before (so no two entries share their end time, the
costliest case), and reports the growth of the process's RSS (/proc/self/statm) and
of the Python heap (tracemalloc is not used: it would double the cost), then admits
them all again to time the "already seen" path. Run in a process of its own.
"""

from __future__ import annotations

import gc
import os
import sys
import time

from tally.visitors import DAY, LocalVisitors

AGENT = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
START = 20_000 * DAY + 3_600


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def ip(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    seen = LocalVisitors(capacity=n)
    ips = [ip(i) for i in range(n)]  # made before the first reading: not the set's memory
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    for i, address in enumerate(ips):
        assert seen.admit_now(1, DAY, (address, AGENT), START + i * 0.05) is not None
    took = time.perf_counter() - started
    gc.collect()
    after = rss_bytes()
    assert len(seen) == n
    again = time.perf_counter()
    now = START + n * 0.05
    for address in ips:
        assert seen.admit_now(1, DAY, (address, AGENT), now) is None
    took_again = time.perf_counter() - again
    grown = after - before
    print(f"visitors        {n:,}")
    print(f"RSS growth      {grown / 2**20:.1f} MiB ({grown / n:.0f} bytes per visitor)")
    print(f"admit (new)     {took / n * 1e6:.2f} us each")
    print(f"admit (seen)    {took_again / n * 1e6:.2f} us each")
    print(f"evicted         {seen.evicted}")


if __name__ == "__main__":
    main()
