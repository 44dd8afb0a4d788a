"""The alert tables, one SQL for both backends: webhooks, alert rules, the outbox the
rules fire into and the log of delivery attempts (migrations sqlite/0010_alerts.sql,
postgresql/0014_alerts.sql, which hold the triggers that fire the rules).

`AlertTables` is a base of `DashboardTables` (so of both stores); it writes `%s`
placeholders, run through each backend's `_fetch` and `_change`. Two things differ by
backend: `_lock_rules` (PostgreSQL locks the workspace's row while its rules change, so
a counter created meanwhile waits and then sees them: its trigger takes a key-share
lock) and `_skip_locked` (PostgreSQL's claim skips the rows another node is claiming;
SQLite has one writer).

- Firing: the triggers insert a row into `alert_outbox` in the transaction of the change
  that crossed, for counters whose `watched` flag is set; `_WATCH` keeps the flag equal
  to "it or its workspace has a rule" in the transaction that changes the rules.
- Delivery: `claim_firings` leases due rows to one node for `lease` seconds (a node that
  dies leaves its lease to expire; one that restarts frees its own: `release_firings`),
  `finish_firing` logs the attempt and settles the row or schedules its retry.
- "No change for": `sweep_quiet` marks each quiet spell once per rule and counter, with a
  conditional upsert (of two nodes sweeping at once, the second finds it marked), and
  fires the marked ones in the same transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from tally.errors import Conflict
from tally.models import AlertRule, DeliveryAttempt, Firing, Webhook
from tally.storage.counter_lists import CounterLists

Params = Sequence[Any]
Statement = tuple[str, Params]

_WEBHOOK = "id, workspace_id, url, secret, description, created_at"
_RULE = (
    "r.id, r.workspace_id, r.counter_id, r.kind, r.threshold, r.webhook_id, r.email, "
    "r.created_at, c.name"
)
_RULE_FROM = "alert_rules r LEFT JOIN counters c ON c.id = r.counter_id"
_FIRING = (
    "id, event_id, workspace_id, workspace_slug, counter_id, counter_name, rule_id, kind, "
    "threshold, value_before, value, fired_at, webhook_id, email, state, attempts, next_at, "
    "delivered_at, last_status"
)
_ATTEMPT = "id, outbox_id, attempt, node, started_at, latency, status, error, response"
# the watched flag of a workspace's counters (or of one), as its rules now say
_WATCHED = (
    "EXISTS (SELECT 1 FROM alert_rules r WHERE r.workspace_id = counters.workspace_id "
    "AND (r.counter_id IS NULL OR r.counter_id = counters.id))"
)
_WATCH_WORKSPACE = (
    f"UPDATE counters SET watched = {_WATCHED} WHERE workspace_id = %s AND watched <> {_WATCHED}"
)
_WATCH_COUNTER = f"UPDATE counters SET watched = {_WATCHED} WHERE id = %s"
# a firing's columns of the outbox, from a quiet rule's sweep (`sweep` marks the spells
# this sweep reported)
_QUIET_MARK = """
INSERT INTO alert_state AS a (rule_id, counter_id, quiet_mark, sweep)
SELECT r.id, c.id, c.updated_at, %s
FROM alert_rules r JOIN counters c
  ON c.id = r.counter_id OR (r.counter_id IS NULL AND c.workspace_id = r.workspace_id)
WHERE r.kind = 'quiet' AND c.updated_at < %s - r.threshold
ON CONFLICT (rule_id, counter_id) DO UPDATE SET quiet_mark = excluded.quiet_mark,
    sweep = excluded.sweep
WHERE a.quiet_mark IS NULL OR a.quiet_mark < excluded.quiet_mark
"""
_QUIET_FIRE = """
INSERT INTO alert_outbox (
    event_id, workspace_id, workspace_slug, counter_id, counter_name, rule_id, kind,
    threshold, value_before, value, fired_at, webhook_id, email, next_at
)
SELECT CAST(%s AS TEXT) || CAST(a.rule_id AS TEXT) || '_' || CAST(a.counter_id AS TEXT),
    r.workspace_id, w.slug, c.id, c.name, r.id, r.kind, r.threshold, c.up_count - c.down_count,
    c.up_count - c.down_count, %s, r.webhook_id, r.email, %s
FROM alert_state a JOIN alert_rules r ON r.id = a.rule_id
JOIN counters c ON c.id = a.counter_id JOIN workspaces w ON w.id = c.workspace_id
WHERE a.sweep = %s
"""


def _webhook(row: Sequence[Any]) -> Webhook:
    return Webhook(int(row[0]), int(row[1]), row[2], row[3], row[4], float(row[5]))


def _rule(row: Sequence[Any]) -> AlertRule:
    return AlertRule(
        id=int(row[0]),
        workspace_id=int(row[1]),
        counter_id=None if row[2] is None else int(row[2]),
        kind=row[3],
        threshold=int(row[4]),
        webhook_id=None if row[5] is None else int(row[5]),
        email=row[6],
        created_at=float(row[7]),
        counter_name=row[8],
    )


def _firing(row: Sequence[Any]) -> Firing:
    return Firing(
        id=int(row[0]),
        event_id=row[1],
        workspace_id=int(row[2]),
        workspace_slug=row[3],
        counter_id=int(row[4]),
        counter_name=row[5],
        rule_id=None if row[6] is None else int(row[6]),
        kind=row[7],
        threshold=int(row[8]),
        value_before=int(row[9]),
        value=int(row[10]),
        fired_at=float(row[11]),
        webhook_id=None if row[12] is None else int(row[12]),
        email=row[13],
        state=int(row[14]),
        attempts=int(row[15]),
        next_at=float(row[16]),
        delivered_at=None if row[17] is None else float(row[17]),
        last_status=row[18],
    )


def _attempt(row: Sequence[Any]) -> DeliveryAttempt:
    return DeliveryAttempt(
        int(row[0]),
        int(row[1]),
        int(row[2]),
        row[3],
        float(row[4]),
        float(row[5]),
        None if row[6] is None else int(row[6]),
        row[7],
        row[8],
    )


class AlertTables(CounterLists):
    """The alert tables over `_fetch` and `_change` (see the module doc)."""

    _lock_rules = "SELECT 1 WHERE %s IS NOT NULL"  # SQLite: its one writer is the lock
    _skip_locked = ""
    _one_server = True  # SQLite: one server per file (tally.storage.server_lock)

    async def _change(
        self, statements: Sequence[Statement], *, settings_kept: bool = False
    ) -> list[list[tuple[Any, ...]]]:
        raise NotImplementedError

    # webhooks ----------------------------------------------------------------

    async def create_webhook(
        self,
        workspace_id: int,
        url: str,
        secret: str,
        description: str,
        now: float,
        *,
        limit: int = 2**31,
    ) -> Webhook:
        """Conflict if the workspace has `limit` webhooks already (checked in the
        transaction, under the workspace's lock: a burst of creations cannot pass it)."""
        rows = await self._change(
            [
                (self._lock_rules, (workspace_id,)),
                (
                    "INSERT INTO webhooks (workspace_id, url, secret, description, created_at) "
                    "SELECT %s, %s, %s, %s, %s WHERE (SELECT COUNT(*) FROM webhooks "
                    f"WHERE workspace_id = %s) < %s RETURNING {_WEBHOOK}",
                    (workspace_id, url, secret, description, now, workspace_id, limit),
                ),
            ],
            settings_kept=True,
        )
        if not rows[1]:
            raise Conflict(f"a workspace has at most {limit} webhooks")
        return _webhook(rows[1][0])

    async def list_webhooks(self, workspace_id: int) -> list[Webhook]:
        rows = await self._fetch(
            f"SELECT {_WEBHOOK} FROM webhooks WHERE workspace_id = %s ORDER BY id",
            (workspace_id,),
        )
        return [_webhook(r) for r in rows]

    async def get_webhook(self, workspace_id: int, webhook_id: int) -> Webhook | None:
        row = await self._one(
            f"SELECT {_WEBHOOK} FROM webhooks WHERE id = %s AND workspace_id = %s",
            (webhook_id, workspace_id),
        )
        return _webhook(row) if row else None

    async def change_webhook(
        self, workspace_id: int, webhook_id: int, *, url: str, secret: str, description: str
    ) -> Webhook | None:
        rows = await self._change(
            [
                (
                    "UPDATE webhooks SET url = %s, secret = %s, description = %s "
                    f"WHERE id = %s AND workspace_id = %s RETURNING {_WEBHOOK}",
                    (url, secret, description, webhook_id, workspace_id),
                )
            ],
            settings_kept=True,
        )
        return _webhook(rows[0][0]) if rows[0] else None

    async def delete_webhook(self, workspace_id: int, webhook_id: int) -> bool:
        """Delete the webhook with its rules and their firings; the watched flags follow."""
        rows = await self._change(
            [
                (self._lock_rules, (workspace_id,)),
                (
                    "DELETE FROM webhooks WHERE id = %s AND workspace_id = %s RETURNING id",
                    (webhook_id, workspace_id),
                ),
                (_WATCH_WORKSPACE, (workspace_id,)),
            ],
            settings_kept=True,
        )
        return bool(rows[1])

    # rules -------------------------------------------------------------------

    async def create_alert_rule(
        self,
        workspace_id: int,
        counter_id: int | None,
        kind: str,
        threshold: int,
        *,
        webhook_id: int | None,
        email: str | None,
        now: float,
        limit: int = 2**31,
    ) -> AlertRule:
        """Save the rule and watch its counter (or every counter of the workspace) in one
        transaction; the caller checks that the counter and webhook are the workspace's.
        Conflict if the workspace has `limit` rules already (as create_webhook)."""
        watch = (
            (_WATCH_WORKSPACE, (workspace_id,))
            if counter_id is None
            else (_WATCH_COUNTER, (counter_id,))
        )
        rows = await self._change(
            [
                (self._lock_rules, (workspace_id,)),
                (
                    "INSERT INTO alert_rules (workspace_id, counter_id, kind, threshold, "
                    "webhook_id, email, created_at) SELECT %s, %s, %s, %s, %s, %s, %s "
                    "WHERE (SELECT COUNT(*) FROM alert_rules WHERE workspace_id = %s) < %s "
                    "RETURNING id",
                    (
                        *(workspace_id, counter_id, kind, threshold, webhook_id, email, now),
                        *(workspace_id, limit),
                    ),
                ),
                watch,
            ],
            settings_kept=True,
        )
        if not rows[1]:
            raise Conflict(f"a workspace has at most {limit} alert rules")
        rule = await self.get_alert_rule(workspace_id, int(rows[1][0][0]))
        assert rule is not None
        return rule

    async def has_alert_rules(self) -> bool:
        """Whether any workspace has a rule (else a node's deliverer ignores commits)."""
        return await self._one("SELECT 1 FROM alert_rules LIMIT 1") is not None

    async def list_alert_rules(self, workspace_id: int) -> list[AlertRule]:
        rows = await self._fetch(
            f"SELECT {_RULE} FROM {_RULE_FROM} WHERE r.workspace_id = %s ORDER BY r.id",
            (workspace_id,),
        )
        return [_rule(r) for r in rows]

    async def get_alert_rule(self, workspace_id: int, rule_id: int) -> AlertRule | None:
        row = await self._one(
            f"SELECT {_RULE} FROM {_RULE_FROM} WHERE r.id = %s AND r.workspace_id = %s",
            (rule_id, workspace_id),
        )
        return _rule(row) if row else None

    async def delete_alert_rule(self, workspace_id: int, rule_id: int) -> bool:
        rows = await self._change(
            [
                (self._lock_rules, (workspace_id,)),
                (
                    "DELETE FROM alert_rules WHERE id = %s AND workspace_id = %s RETURNING id",
                    (rule_id, workspace_id),
                ),
                (_WATCH_WORKSPACE, (workspace_id,)),
            ],
            settings_kept=True,
        )
        return bool(rows[1])

    # the outbox --------------------------------------------------------------

    async def claim_firings(self, node: str, now: float, lease: float, limit: int) -> list[Firing]:
        """Lease up to `limit` due firings to `node` until now + lease, counting the
        attempt; a row another node holds (its lease running) is not taken."""
        rows = await self._change(
            [
                (
                    "UPDATE alert_outbox SET lease_node = %s, lease_until = %s, "
                    "attempts = attempts + 1 WHERE id IN (SELECT id FROM alert_outbox "
                    "WHERE state = 0 AND next_at <= %s AND lease_until < %s "
                    f"ORDER BY next_at LIMIT %s{self._skip_locked}) RETURNING {_FIRING}",
                    (node, now + lease, now, now, limit),
                )
            ],
            settings_kept=True,
        )
        return sorted((_firing(r) for r in rows[0]), key=lambda f: f.id)

    async def next_firing_at(self) -> float | None:
        """When the earliest pending firing is due (None: none is pending)."""
        row = await self._one("SELECT MIN(next_at) FROM alert_outbox WHERE state = 0")
        return None if row is None or row[0] is None else float(row[0])

    async def release_firings(self, node: str) -> int:
        """Free the leases `node` holds; on SQLite, where one server owns the file, every
        lease (a server starting there: the one that held them is gone)."""
        mine = "" if self._one_server else "lease_node = %s AND "
        rows = await self._change(
            [
                (
                    f"UPDATE alert_outbox SET lease_until = 0 "
                    f"WHERE {mine}state = 0 AND lease_until > 0 RETURNING id",
                    () if self._one_server else (node,),
                )
            ],
            settings_kept=True,
        )
        return len(rows[0])

    async def finish_firing(
        self,
        firing: Firing,
        node: str,
        *,
        started_at: float,
        latency: float,
        status: int | None,
        error: str,
        response: str,
        state: int,
        next_at: float,
    ) -> None:
        """Log one attempt, then settle the firing (`state` 1 or 2) or schedule its next
        try at `next_at` (`state` 0), freeing its lease."""
        shown = str(status) if status is not None else (error or "no answer")
        await self._change(
            [
                (
                    "INSERT INTO alert_deliveries (outbox_id, attempt, node, started_at, "
                    "latency, status, error, response) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        firing.id,
                        firing.attempts,
                        node,
                        started_at,
                        latency,
                        status,
                        error,
                        response,
                    ),
                ),
                (
                    "UPDATE alert_outbox SET state = %s, next_at = %s, lease_until = 0, "
                    "last_status = %s, delivered_at = CASE WHEN %s = 1 THEN %s ELSE "
                    "delivered_at END WHERE id = %s AND state = 0",
                    (state, next_at, shown[:200], state, started_at + latency, firing.id),
                ),
            ],
            settings_kept=True,
        )

    async def resend_firing(self, workspace_id: int, firing_id: int, now: float) -> bool:
        """Deliver the firing again (same event id), now; False if it is not the
        workspace's."""
        rows = await self._change(
            [
                (
                    "UPDATE alert_outbox SET state = 0, next_at = %s, lease_until = 0, "
                    "attempts = 0 WHERE id = %s AND workspace_id = %s RETURNING id",
                    (now, firing_id, workspace_id),
                )
            ],
            settings_kept=True,
        )
        return bool(rows[0])

    async def list_firings(
        self, workspace_id: int, *, limit: int = 50, before: int | None = None
    ) -> list[Firing]:
        """The workspace's firings, newest first, with id < `before` if given."""
        rows = await self._fetch(
            f"SELECT {_FIRING} FROM alert_outbox WHERE workspace_id = %s AND id < %s "
            "ORDER BY id DESC LIMIT %s",
            (workspace_id, before if before is not None else 2**62, limit),
        )
        return [_firing(r) for r in rows]

    async def get_firing(self, workspace_id: int, firing_id: int) -> Firing | None:
        row = await self._one(
            f"SELECT {_FIRING} FROM alert_outbox WHERE id = %s AND workspace_id = %s",
            (firing_id, workspace_id),
        )
        return _firing(row) if row else None

    async def list_attempts(self, firing_id: int) -> list[DeliveryAttempt]:
        rows = await self._fetch(
            f"SELECT {_ATTEMPT} FROM alert_deliveries WHERE outbox_id = %s ORDER BY id",
            (firing_id,),
        )
        return [_attempt(r) for r in rows]

    async def prune_firings(self, before: float, limit: int = 1000) -> int:
        """Delete up to `limit` settled firings (and their tries) fired before `before`,
        oldest first; how many."""
        rows = await self._change(
            [
                (
                    "DELETE FROM alert_outbox WHERE id IN (SELECT id FROM alert_outbox "
                    "WHERE state <> 0 AND fired_at < %s ORDER BY id LIMIT %s) RETURNING id",
                    (before, limit),
                )
            ],
            settings_kept=True,
        )
        return len(rows[0])

    # "no change for" -----------------------------------------------------------

    async def sweep_quiet(self, now: float) -> int:
        """Fire every quiet rule whose counter has not changed for its duration and whose
        spell is not yet reported, in one transaction; how many fired."""
        sweep = secrets.token_hex(12)
        rows = await self._change(
            [
                (_QUIET_MARK, (sweep, now)),
                (_QUIET_FIRE, (f"msg_q{sweep}_", now, now, sweep)),
                ("UPDATE alert_state SET sweep = NULL WHERE sweep = %s RETURNING 1", (sweep,)),
            ],
            settings_kept=True,
        )
        return len(rows[2])
