"""The memory of the in-process unique-visitor set (tally.visitors.LocalVisitors): RSS
and bytes per visitor for VISITORS distinct visitors, and the time an admit takes.

    .venv/bin/python -m bench.unique_memory [VISITORS] [--redis URL]

With --redis, also the Redis set (tally.storage.redis_visitors): the growth of Redis's
`used_memory` for VISITORS visits of one counter recorded through the real script
(`seen.lua`, called in pipelined batches, its bound VISITORS), under a key prefix of its
own that is deleted afterwards.

Admits VISITORS (default 1,000,000) distinct visitors (one per client IP, one
User-Agent, one counter, a 24 h window) through the real `admit_now` path, each
0.05 s later than the one before (so no two entries share their end time, the
costliest case), and reports the growth of the process's RSS (/proc/self/statm) and
of the Python heap (tracemalloc is not used: it would double the cost), then admits
them all again to time the "already seen" path. Run in a process of its own.
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import sys
import time

import redis.asyncio as aioredis

from tally.storage.redis_visitors import SEEN_LUA, RedisVisitors
from tally.visitors import DAY, LocalVisitors, salt_days, visitor_hash

AGENT = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
START = 20_000 * DAY + 3_600


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def ip(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


async def redis_memory(url: str, n: int) -> None:
    client = aioredis.Redis.from_url(url)
    prefix = f"bench-unique-{secrets.token_hex(4)}:"
    visitors = RedisVisitors(client, prefix=prefix)
    salt = secrets.token_bytes(32)
    now = START
    (day,) = salt_days(now, 3_600)  # noon: one salt day
    script = client.register_script(SEEN_LUA)
    try:
        before = int((await client.info("memory"))["used_memory"])
        started = time.perf_counter()
        for first in range(0, n, 1_000):
            pipe = client.pipeline(transaction=False)
            for i in range(first, min(n, first + 1_000)):
                hashed = visitor_hash(salt, 1, (ip(i), AGENT))
                args = [repr(now), repr(now + DAY), n, DAY, hashed]
                await script(keys=[visitors.set_key(1)], args=args, client=pipe)
            assert all(await pipe.execute())
        took = time.perf_counter() - started
        after = int((await client.info("memory"))["used_memory"])
        grown = after - before
        print(f"Redis visitors  {n:,} (day {day})")
        print(f"Redis growth    {grown / 2**20:.1f} MiB ({grown / n:.0f} bytes per visitor)")
        print(f"Redis record    {took / n * 1e6:.2f} us each (pipelined by 1,000)")
    finally:
        chunk: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=10_000):
            chunk.append(key)
            if len(chunk) == 10_000:
                await client.unlink(*chunk)
                chunk = []
        if chunk:
            await client.unlink(*chunk)
        await client.aclose()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1_000_000
    if "--redis" in sys.argv:
        url = sys.argv[sys.argv.index("--redis") + 1]
        asyncio.run(redis_memory(url, n))
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
