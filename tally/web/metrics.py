"""GET /metrics: the node's counters in the Prometheus text format."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tally.web.app import Services

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


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
    fallback = getattr(limiter, "using_fallback", None)
    if fallback is not None:
        rows += [
            (
                "tally_ratelimit_redis_fallback",
                "gauge",
                "1 while Redis is unreachable and this node limits on its own.",
                int(fallback),
            ),
            (
                "tally_ratelimit_redis_fallbacks_total",
                "counter",
                "Times this node fell back to its own limiter.",
                getattr(limiter, "fallbacks", 0),
            ),
            (
                "tally_ratelimit_redis_calls_total",
                "counter",
                "Script calls sent to Redis (each carries every hit waiting for one).",
                getattr(limiter, "batches", 0),
            ),
            (
                "tally_ratelimit_redis_hits_total",
                "counter",
                "Hits decided by a call to Redis.",
                getattr(limiter, "hits", 0),
            ),
            (
                "tally_ratelimit_redis_reserved_hits_total",
                "counter",
                "Hits admitted from cells this node had reserved in Redis, without a call.",
                getattr(limiter, "reserved_hits", 0),
            ),
            (
                "tally_ratelimit_redis_blocked_hits_total",
                "counter",
                "Hits refused without a call because Redis had just refused their key.",
                getattr(limiter, "blocked_hits", 0),
            ),
        ]
    out: list[str] = []
    for name, kind, help_text, value in rows:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value:g}"]
    return ("\n".join(out) + "\n").encode()
