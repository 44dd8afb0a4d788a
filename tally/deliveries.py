"""The alert deliverer: one task per node that takes due firings from the outbox and
delivers them (a signed webhook POST, or an email), at least once each.

- Claim: `Store.claim_firings` leases a few due rows to this node (PostgreSQL: SKIP
  LOCKED, so two nodes never take the same row); a node that dies mid-delivery leaves
  its lease to expire (`lease` seconds) and another node, or itself restarted (which
  frees its own leases at once), delivers the row again with the same webhook-id.
- When: at once after a commit on this node (`on_commit`, from the group commit), at
  most every POKE_GAP seconds, while any workspace has a rule (checked every `interval`:
  without rules, commits cost nothing here; a rule made on this node arms it at once,
  one made on another node within `interval`); at once after a resend (`poke`);
  otherwise at the earliest retry due, or every `interval` seconds, which is also how
  often the quiet rules are swept.
- Each try is logged (status, latency, the start of the answer); a failure is tried
  again on tally.alerts.backoff's schedule, until 2xx or 24 h. Settled firings are
  kept KEEP (30 days), pruned once an hour.

The HTTP client has timeouts; the work is I/O on the loop (httpx), the lookups of a
receiver's address off it (tally.webhooks.check_host), emails on a thread (tally.mail).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx
import orjson

from tally import alerts, webhooks
from tally.errors import StorageError
from tally.mail import Mail, Mailer
from tally.models import Firing, Webhook
from tally.storage.base import Store

log = logging.getLogger("tally.deliveries")
POKE_GAP = 0.01  # seconds between two looks prompted by commits (at most 100 a second)
CLAIM = 10  # firings claimed, and delivered, at once
KEEP = 30 * 86400.0  # seconds a settled firing stays in the delivery log
PRUNE_EVERY = 3600.0


class Deliveries:
    def __init__(
        self,
        store: Store,
        mailer: Mailer | None,
        *,
        timeout: float = 10.0,
        interval: float = 5.0,
        backoff_scale: float = 1.0,
        allow_private: bool = False,
    ) -> None:
        self.store = store
        self.mailer = mailer
        self.timeout = timeout
        self.interval = interval
        self.backoff_scale = backoff_scale
        self.allow_private = allow_private
        # a try is cut at `timeout` (all of it: lookup, connection, answer), well within
        # its lease; a node that dies leaves its leases to run out (SQLite: freed at start)
        self.lease = timeout * 2 + 5
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._last_sweep = 0.0
        self._last_prune = 0.0
        self._armed = True  # some workspace has a rule (refreshed with every sweep)
        # for the metrics and the report
        self.delivered = 0
        self.failed_tries = 0
        self.given_up = 0

    def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout), follow_redirects=False, trust_env=False
        )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tally-alerts")

    async def stop(self) -> None:
        # The flag ends the loop even when the cancel is lost: on Python 3.11,
        # asyncio.wait_for returns normally, swallowing a cancel, when what it waits for
        # finished in the same turn, as when the last commit of a shutdown sets `_wake`
        # just before this stop (the server's shutdown then hung for ever).
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def on_commit(self, _changes: object) -> None:
        """A group commit's listener (cheap): look soon, if any rule may have fired."""
        if self._armed:
            self._wake.set()

    def poke(self) -> None:
        """Look now (a rule was made, a firing resent)."""
        self._armed = True
        self._wake.set()

    async def _run(self) -> None:
        with contextlib.suppress(StorageError):
            freed = await self.store.release_firings(self.store.node)
            if freed:
                log.info("%d firings this node was delivering when it stopped: again", freed)
        while not self._stopping:
            looked = time.monotonic()
            try:
                wait = await self.round()
            except StorageError as exc:
                log.warning("alert delivery: the database failed: %s", exc)
                wait = self.interval
            except Exception:
                log.exception("alert delivery failed unexpectedly")
                wait = self.interval
            # asyncio.timeout, not wait_for: no task of its own for the wait (a node's
            # tasks stay what they are), and no cancel swallowed on Python 3.11
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, POKE_GAP)):
                    await self._wake.wait()
            self._wake.clear()
            # commits in a burst: one look per POKE_GAP at most
            await asyncio.sleep(max(0.0, looked + POKE_GAP - time.monotonic()))

    async def round(self) -> float:
        """Sweep the quiet rules when due, deliver what is due; seconds until the next
        look."""
        now = time.time()
        if now - self._last_sweep >= self.interval:
            self._last_sweep = now
            self._armed = await self.store.has_alert_rules()
            if self._armed:
                await self.store.sweep_quiet(now)
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            await self.store.prune_firings(now - KEEP)
        while True:
            due = await self.store.next_firing_at()
            if due is None:
                return self.interval
            now = time.time()
            if due > now:
                return min(due - now, self.interval)
            firings = await self.store.claim_firings(self.store.node, now, self.lease, CLAIM)
            if not firings:
                return min(1.0, self.interval)  # another node holds them
            hooks: dict[int, Webhook | None] = {}
            for f in firings:
                if f.webhook_id is not None and f.webhook_id not in hooks:
                    hooks[f.webhook_id] = await self.store.get_webhook(f.workspace_id, f.webhook_id)
            await self._deliver_all(firings, hooks)

    async def _deliver_all(self, firings: list[Firing], hooks: dict[int, Webhook | None]) -> None:
        await asyncio.gather(
            *(self.deliver(f, hooks.get(f.webhook_id) if f.webhook_id else None) for f in firings)
        )

    async def deliver(self, f: Firing, hook: Webhook | None) -> None:
        """One try at one firing (cut at `timeout`), logged and settled."""
        started = time.time()
        body = orjson.dumps(alerts.payload(f))
        try:
            async with asyncio.timeout(self.timeout):
                outcome = await self._try(f, hook, body)
        except TimeoutError:
            outcome = webhooks.Outcome(None, time.time() - started, "timed out", "")
        await self._settle(f, outcome, started)

    async def _try(self, f: Firing, hook: Webhook | None, body: bytes) -> webhooks.Outcome:
        started = time.perf_counter()
        if hook is not None:
            refused = await webhooks.check_host(hook.url, allow_private=self.allow_private)
            if refused is not None:
                return webhooks.Outcome(None, 0.0, refused, "")
            assert self._client is not None
            return await webhooks.post(self._client, hook.url, hook.secret, f.event_id, body)
        if f.email and self.mailer is not None and self.mailer.configured:
            sent = await self.mailer.send(Mail(f.email, alerts.describe(f), body.decode()))
            status = 250 if sent else None  # SMTP's "OK"
            return webhooks.Outcome(status, time.perf_counter() - started, "", "")
        return webhooks.Outcome(None, 0.0, "no webhook, or mail is not configured", "")

    async def _settle(self, f: Firing, outcome: webhooks.Outcome, started: float) -> None:
        if outcome.delivered:
            state, next_at = 1, started
            self.delivered += 1
        else:
            self.failed_tries += 1
            retry = alerts.backoff(f.attempts, f.fired_at, time.time(), self.backoff_scale)
            state, next_at = (2, started) if retry is None else (0, retry)
            if retry is None:
                self.given_up += 1
                log.warning("alert %s given up after %d tries", f.event_id, f.attempts)
        await self.store.finish_firing(
            f,
            self.store.node,
            started_at=started,
            latency=outcome.latency,
            status=outcome.status,
            error=outcome.error,
            response=outcome.response,
            state=state,
            next_at=next_at,
        )
