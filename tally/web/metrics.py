"""GET /metrics: the node's counters in the Prometheus text format."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tally.web.app import Services

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

# the Redis limiter's counters: (metric, attribute of RedisRateLimiter, help)
REDIS_LIMITER_COUNTERS = (
    (
        "tally_ratelimit_redis_fallbacks_total",
        "fallbacks",
        "Times this node fell back to its own limiter.",
    ),
    (
        "tally_ratelimit_redis_calls_total",
        "batches",
        "Script calls sent to Redis (each carries every hit waiting for one).",
    ),
    ("tally_ratelimit_redis_hits_total", "hits", "Hits decided by a call to Redis."),
    (
        "tally_ratelimit_redis_reserved_hits_total",
        "reserved_hits",
        "Hits admitted from cells this node had reserved in Redis, without a call.",
    ),
    (
        "tally_ratelimit_redis_blocked_hits_total",
        "blocked_hits",
        "Hits refused without a call because Redis had just refused their key.",
    ),
)


def render(services: Services) -> bytes:
    writes = services.writes
    limiter = services.api.limiter
    rows: list[tuple[str, str, str, float]] = [
        (
            "tally_batches_committed_total",
            "counter",
            "Group-commit transactions committed.",
            writes.batches_committed,
        ),
        (
            "tally_batches_failed_total",
            "counter",
            "Group-commit transactions that failed.",
            writes.batches_failed,
        ),
        (
            "tally_changes_committed_total",
            "counter",
            "Counter changes committed (one per counter per batch).",
            writes.changes_committed,
        ),
        (
            "tally_pending_changes",
            "gauge",
            "Counter changes in memory, not yet committed.",
            writes.pending,
        ),
        (
            "tally_counter_cache_entries",
            "gauge",
            "Counters whose settings this node caches.",
            len(services.counters.cache),
        ),
    ]
    rows += [
        ("tally_streams_open", "gauge", "Live streams open on this node.", services.streams.open),
        (
            "tally_stream_events_total",
            "counter",
            "Events sent on live streams.",
            services.streams.events,
        ),
        (
            "tally_streams_remote",
            "gauge",
            "1 while other nodes' changes reach the streams (else they read every 2 s).",
            int(services.feed.remote),
        ),
        ("tally_asyncio_tasks", "gauge", "Tasks of the event loop.", len(asyncio.all_tasks())),
    ]
    fallback = getattr(limiter, "using_fallback", None)
    if fallback is not None:
        rows += [
            (
                "tally_ratelimit_redis_fallback",
                "gauge",
                "1 while Redis is unreachable and this node limits on its own.",
                int(fallback),
            ),
        ]
        rows += [
            (name, "counter", help_text, getattr(limiter, attribute, 0))
            for name, attribute, help_text in REDIS_LIMITER_COUNTERS
        ]
    out: list[str] = []
    for name, kind, help_text, value in rows:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value:g}"]
    return ("\n".join(out) + "\n").encode()
