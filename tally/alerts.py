"""Alert rules and their firings: what a rule may say, what a firing's message holds, and
when a failed delivery is tried again.

A rule watches one counter, or every counter of its workspace, and fires

- `above` when the value reaches its threshold from below (old < t <= new),
- `below` when the value reaches it from above (old > t >= new),
- `rate` when the events (ups plus downs) of one UTC hour pass it (the event that makes
  them t + 1 fires, once that hour),
- `quiet` when the counter has not changed for `threshold` seconds (once per quiet
  spell; a periodic sweep, tally.deliveries).

The first three fire from a trigger in the transaction of the change (migrations
sqlite/0010_alerts.sql, postgresql/0014_alerts.sql): a crossing commits with exactly one
firing, on any number of nodes. Values are the committed ones: ups and downs that one
group commit merges (9 -> 11 -> 9 in one batch) cross nothing.

Each firing goes to the rule's webhook (tally.webhooks) or email address, at least once:
tried again after 5 s, 10 s, 20 s ... (at most an hour apart) until it is answered 2xx
or is 24 h old (`backoff`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from tally.errors import BadRequest
from tally.models import Firing

KINDS = ("above", "below", "rate", "quiet")
MAX_THRESHOLD = 2**62
MIN_QUIET = 60  # seconds
MAX_QUIET = 366 * 86400
MAX_RULES = 100  # per workspace
MAX_WEBHOOKS = 20  # per workspace
FIRST_RETRY = 5.0  # seconds after the first failed try
LONGEST_WAIT = 3600.0  # between two tries
GIVE_UP_AFTER = 86400.0  # a firing this old is not tried again
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")

EVENT_TYPES = {
    "above": "counter.above",
    "below": "counter.below",
    "rate": "counter.rate",
    "quiet": "counter.quiet",
}


def check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}")
    return str(kind)


def check_threshold(kind: str, value: object) -> int:
    """The rule's threshold: a whole number within +-2^62 (above, below), a count of
    events from 0 (rate), or seconds from 60 to 366 days (quiet)."""
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise BadRequest("threshold must be a whole number")
    if kind in ("above", "below") and abs(value) > MAX_THRESHOLD:
        raise BadRequest("threshold must be a whole number from -2^62 to 2^62")
    if kind == "rate" and not 0 <= value <= MAX_THRESHOLD:
        raise BadRequest("a rate's threshold must be a number of events from 0 to 2^62")
    if kind == "quiet" and not MIN_QUIET <= value <= MAX_QUIET:
        raise BadRequest(
            f"a quiet rule's threshold must be seconds from {MIN_QUIET} to {MAX_QUIET}"
        )
    return value


def check_email(value: object) -> str:
    if not isinstance(value, str) or not _EMAIL.fullmatch(value.strip()):
        raise BadRequest("email must be an email address")
    return value.strip()


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload(f: Firing) -> dict[str, Any]:
    """A firing's message, the same on every try (the Standard Webhooks shape: type,
    timestamp, data)."""
    return {
        "type": EVENT_TYPES.get(f.kind, f"counter.{f.kind}"),
        "timestamp": rfc3339(f.fired_at),
        "data": {
            "workspace": f.workspace_slug,
            "counter": f.counter_name,
            "counter_id": f.counter_id,
            "rule_id": f.rule_id,
            "kind": f.kind,
            "threshold": f.threshold,
            "value_before": f.value_before,
            "value": f.value,
        },
    }


def describe(f: Firing) -> str:
    """A firing in one sentence (an email's subject)."""
    where = f"{f.workspace_slug}/{f.counter_name}"
    if f.kind == "above":
        return f"{where} reached {f.threshold} (now {f.value})"
    if f.kind == "below":
        return f"{where} fell to {f.threshold} (now {f.value})"
    if f.kind == "rate":
        return f"{where} changed more than {f.threshold} times this hour"
    return f"{where} has not changed for {f.threshold} seconds"


def backoff(attempts: int, fired_at: float, now: float, scale: float = 1.0) -> float | None:
    """When to try a firing again after `attempts` failed tries: FIRST_RETRY doubled per
    try, at most LONGEST_WAIT, times `scale` (TALLY_ALERT_BACKOFF_SCALE); None once that
    is past GIVE_UP_AFTER (scaled) from its firing: given up."""
    wait = min(FIRST_RETRY * 2.0 ** max(attempts - 1, 0), LONGEST_WAIT) * scale
    if now + wait > fired_at + GIVE_UP_AFTER * scale:
        return None
    return now + wait
