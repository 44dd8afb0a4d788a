"""The Store protocol: everything Tally keeps, behind one small async interface.

Each backend wraps its driver's errors into `tally.errors.StorageError`. Counts change
only through `apply`, which takes deltas, never absolute values (except a reset), and
records the batch's `seq` for this store's node in the same transaction, so a reader can
tell which of the node's batches a snapshot already contains.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tally.models import (
    Account,
    AlertRule,
    BatchChanges,
    Counter,
    CounterChange,
    CounterPage,
    CounterRecord,
    DeliveryAttempt,
    Firing,
    History,
    Member,
    Membership,
    OneTimeToken,
    Permission,
    Role,
    Session,
    Share,
    Token,
    Totals,
    Webhook,
    Workspace,
)
from tally.storage.overview import EVERY, Mover, Scope

NO_END = 2**62  # an hour index after any real one


class Store(Protocol):
    node: str
    dialect: str  # "sqlite", "postgresql": which migrations/ folder is ours
    # seconds a busy group commit lets its next batch fill (TALLY_COMMIT_LINGER=auto)
    commit_linger: float
    # counters a workspace without a quota of its own may have (0: no quota)
    counter_quota: int

    def settings_known(self) -> tuple[int, float] | None:
        """What this store knows exactly of changes to anything a counter lookup returns
        besides its counts (settings, names, workspaces; `Counters` caches lookups):
        (epoch, since) where `epoch` changes with every such change committed before the
        monotonic time `since`; a lookup read under the current epoch is exact up to then.
        SQLite looks with every write of its own, PostgreSQL with every group commit (the
        database's settings epoch). None where a store cannot know: lookups are then
        trusted for a time to live instead."""
        ...

    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    async def claim_node(self) -> None:
        """Record this store's node as a new one. Raises Conflict if a node of that name
        exists: two live nodes with one name would skip each other's batches."""

    async def register_node(self) -> int:
        """The last batch seq this store's node committed (0 if new); forgets nodes idle
        for a week."""

    async def heartbeat(self, live_within: float) -> int:
        """Mark this store's node alive now; how many nodes were marked alive (claimed,
        committed a batch or beat) within the last `live_within` seconds, this one
        included. Only the database answers it: the rate limit's share while Redis is
        away (tally.nodes)."""

    async def meta_get_or_set(self, key: str, default: str) -> str:
        """The stored value of `key`; stores `default` first if there is none."""

    # workspaces
    async def create_workspace(
        self,
        slug: str,
        name: str,
        created_at: float | None = None,
        *,
        v1_open: bool = False,
        origins: tuple[str, ...] = (),
    ) -> Workspace:
        """Raises Conflict if the slug is taken. `created_at`: now unless given (an import);
        the V1 flag and allowed origins are saved with it, in its transaction."""

    async def get_workspace(self, slug: str) -> Workspace | None: ...

    async def list_workspaces(self) -> list[Workspace]: ...

    async def set_workspace_rules(
        self, workspace_id: int, *, v1_open: bool, origins: tuple[str, ...]
    ) -> Workspace | None:
        """Replace the workspace's V1 flag and allowed origins; None if it is missing."""

    async def set_page_counting(
        self, workspace_id: int, *, page_views: bool, honour_dnt: bool
    ) -> Workspace | None:
        """Turn the workspace's page counting on or off, and whether it honours
        Do-Not-Track / Global Privacy Control (tally.pageviews); None if it is missing."""

    # tokens
    async def create_token(
        self,
        workspace_id: int,
        name: str,
        prefix: str,
        token_hash: str,
        permission: Permission,
        expires_at: float | None = None,
        *,
        created_by: int | None = None,
    ) -> Token: ...

    async def find_token(self, token_hash: str) -> Token | None:
        """The token with this hash, revoked ones included."""

    async def list_tokens(self, workspace_id: int) -> list[Token]: ...

    async def revoke_token(self, token_id: int) -> bool:
        """False if there is no such token or it was already revoked."""

    # counters
    async def create_counter(
        self, workspace_id: int, name: str, *, private: bool = False, description: str = ""
    ) -> Counter:
        """Raises Conflict if the workspace has a counter of that name."""

    async def change_counter(self, counter_id: int, change: CounterChange) -> Counter | None:
        """Save every setting of `change` in one transaction (all or nothing); the counter
        as saved, or None if it is missing. New bounds are checked in that transaction
        against the counter's committed value, read with its row locked: Conflict
        (tally.rules.check_value) if a bound that changes is one the value breaks, and
        then nothing changes. The caller checks each value (tally.rules)."""

    async def ensure_counter(self, workspace_id: int, name: str) -> Counter:
        """The counter, created public and empty if missing (safe under races)."""

    async def ensure_counters(self, wanted: Sequence[tuple[int, str]]) -> list[Counter | Exception]:
        """ensure_counter of each (workspace id, name), in one transaction: for each, in
        order, the counter, or the error of that one alone (QuotaReached: the workspace's
        quota was full; it was not created). A failed transaction raises StorageError."""

    async def read_counter(self, workspace_slug: str, name: str) -> Counter | None:
        """The committed counter with `seq` from the same snapshot."""

    async def read_counts(self, counter_id: int) -> tuple[int, int, float, int] | None:
        """(up_count, down_count, updated_at, seq) of the counter from one snapshot."""

    async def list_counters(self, workspace_id: int) -> list[Counter]: ...

    async def count_counters(self, workspace_id: int) -> int: ...

    async def list_counters_after(
        self, workspace_id: int, after_id: int, limit: int
    ) -> list[Counter]:
        """At most `limit` counters of the workspace with id > after_id, in id order (a
        page of an export: bounded memory whatever the workspace's size)."""

    async def read_buckets(self, counter_ids: list[int]) -> list[tuple[int, int, int, int]]:
        """(counter_id, hour, up, down) of every bucket of these counters, in that order."""

    async def import_counters(self, workspace_id: int, records: list[CounterRecord]) -> list[str]:
        """Set each counter of `records` to the record's values, in one transaction:
        created if missing; totals, settings and times replaced (rules and the unique
        window unless None); the hourly history replaced by the record's unless its
        hours are None. Per record: "created",
        "changed" or "unchanged" (already equal: nothing written). Not for counters a
        server is counting at the same moment (its changes may be overwritten)."""

    async def read_history(
        self, counter_id: int, since_hour: int = 0, before_hour: int = NO_END
    ) -> History:
        """The counter's hourly buckets with since_hour <= hour < before_hour (all by
        default), with `seq` from the same snapshot."""

    async def apply(self, changes: BatchChanges) -> dict[int, Totals]:
        """Apply one batch in one transaction; the totals of every changed counter that
        still exists, as committed. A batch whose seq this node already committed is not
        applied again (a retry after a COMMIT whose answer was lost counts once).

        A checked delta that would cross its counter's bounds (as stored at commit time)
        changes nothing, its hourly buckets included: its totals come back `refused`
        (also to a retry). A set (`record` >= 0) adds its difference to the totals it
        replaced into the bucket of hour `record` (see CounterDelta), and its totals
        carry the `replaced` ones.

        Raises OutcomeUnknown when the batch was sent but no answer came: it may have
        committed. Any other StorageError means it did not."""

    async def settle(self, changes: BatchChanges) -> dict[int, Totals] | None:
        """After `apply(changes)` raised OutcomeUnknown: did it commit? The totals of its
        counters now if it did (checked changes marked `refused` as they were decided).
        None if it did not, and then it never will: this node's seq is moved past the
        batch (a fence), so a call that reaches the database later changes nothing.
        Raises StorageError when the database cannot tell now; calling it again is
        safe."""

    # the dashboard (storage/dashboard.py, one SQL for both backends) ------------

    async def create_account(self, email: str, password_hash: str, now: float) -> Account:
        """Raises Conflict if an account has this email (in any letter case)."""

    async def get_account(self, account_id: int) -> Account | None: ...

    async def find_account(self, email: str) -> Account | None: ...

    async def count_accounts(self) -> int: ...

    async def set_password(
        self, account_id: int, password_hash: str, now: float, *, rehash: bool = False
    ) -> None:
        """Store a new password hash; unless it is the same password rehashed, every unused
        reset link of the account dies with the password it was asked for, in the same
        transaction."""

    async def mark_verified(self, account_id: int, now: float) -> None: ...

    async def create_session(
        self, session_hash: str, account_id: int, now: float, expires_at: float
    ) -> None: ...

    async def find_session(self, session_hash: str, now: float) -> Session | None:
        """The unexpired session with this hash, with its account."""

    async def delete_session(self, session_hash: str) -> None: ...

    async def delete_sessions(self, account_id: int) -> int:
        """End every session of the account; how many there were."""

    async def create_one_time(
        self,
        purpose: str,
        token_hash: str,
        now: float,
        expires_at: float,
        *,
        account_id: int | None = None,
        workspace_id: int | None = None,
        email: str = "",
        role: Role | None = None,
        created_by: int | None = None,
    ) -> None: ...

    async def peek_one_time(self, purpose: str, token_hash: str, now: float) -> OneTimeToken | None:
        """The unused, unexpired link with this hash, left unused."""

    async def use_one_time(
        self, purpose: str, token_hash: str, now: float, *, account_id: int | None = None
    ) -> OneTimeToken | None:
        """Mark the link used and return it; None if it is unknown, used or expired (so of
        two racing uses, one wins). `account_id`: the account that used it (an accepted
        invitation records who accepted it; a cancelled one records nobody)."""

    async def find_one_time(self, purpose: str, token_hash: str) -> OneTimeToken | None:
        """The link with this hash whatever its state (used, cancelled, expired), with its
        `used_at` and `created_by`, to say why it no longer works; None if unknown (or
        deleted, a week past its expiry)."""

    async def list_invites(self, workspace_id: int, now: float) -> list[OneTimeToken]: ...

    async def cancel_invite(self, workspace_id: int, invite_id: int, now: float) -> bool: ...

    async def add_member(self, workspace_id: int, account_id: int, role: Role, now: float) -> None:
        """Add the account to the workspace, or change its role if it is a member."""

    async def remove_member(self, workspace_id: int, account_id: int) -> bool:
        """Remove the member unless it is the workspace's last owner; False if it was no
        member or is the last owner (atomic: two owners leaving at once leave one)."""

    async def set_member_role(self, workspace_id: int, account_id: int, role: Role) -> bool:
        """Change a member's role unless that leaves the workspace without an owner;
        False if it is no member or the last owner stepping down (atomic)."""

    async def claim_bootstrap(self, slug: str, account_id: int, now: float) -> bool:
        """Make the account the owner of the workspace `slug` if that has no member and
        no account is older; whether it did (atomic: of two first accounts made at
        once, one owns it)."""

    async def drop_grants(
        self, workspace_id: int, account_id: int, now: float, *, revoke_tokens: bool
    ) -> tuple[int, int]:
        """What a member leaves behind in a workspace: cancel the invitations they sent
        and (if `revoke_tokens`) revoke the tokens they made there, in one transaction;
        (tokens revoked, invitations cancelled)."""

    async def token_creators(self, workspace_id: int) -> dict[int, str]:
        """The email of the account that made each of the workspace's tokens, by token id
        (tokens the operator or the management API made are not in it)."""

    async def list_members(self, workspace_id: int) -> list[Member]: ...

    async def member_role(self, workspace_id: int, account_id: int) -> Role | None: ...

    async def memberships(self, account_id: int) -> list[Membership]: ...

    async def get_workspace_by_id(self, workspace_id: int) -> Workspace | None: ...

    async def rename_workspace(self, workspace_id: int, name: str) -> None: ...

    async def set_workspace_timezone(self, workspace_id: int, timezone: str) -> None:
        """The workspace's time zone, an IANA name ("": the server's, TALLY_TIMEZONE)."""

    async def delete_workspace(self, workspace_id: int) -> bool:
        """Delete the workspace with its counters, their hourly history, its tokens, members
        and invitations (the rest by ON DELETE CASCADE)."""

    async def touch_token(self, token_id: int, now: float) -> None:
        """Record the token's last use (the verifier calls this at most once a minute)."""

    async def get_counter_by_id(self, counter_id: int) -> Counter | None: ...

    async def delete_counter(self, counter_id: int) -> bool:
        """Delete the counter and its hourly history."""

    async def counter_usage(self, workspace_id: int) -> tuple[int, int | None]:
        """How many counters the workspace has, and its own quota (None: the server's)."""

    async def set_counter_quota(self, workspace_id: int, quota: int | None) -> None:
        """Give the workspace a counter quota of its own (0: none), or the server's
        (None). Creating a counter past the quota raises QuotaReached."""

    # shares (storage/shares.py, one SQL for both backends) ----------------------

    async def create_share(
        self,
        workspace_id: int,
        counter_id: int | None,
        *,
        public: bool,
        secret_hash: str | None,
        prefix: str,
        name: str,
        include_private: tuple[int, ...],
        created_by: int | None,
        now: float,
        expires_at: float | None,
    ) -> Share:
        """A new share; a public one revokes the page's live public share."""

    async def get_share(self, workspace_id: int, share_id: int) -> Share | None: ...

    async def list_shares(self, workspace_id: int) -> list[Share]: ...

    async def find_secret_share(self, secret_hash: str) -> Share | None:
        """The share of a secret link, revoked and expired ones included."""

    async def find_public_share(self, slug: str, counter_id: int | None) -> Share | None:
        """The newest public share of the page, revoked and expired ones included."""

    async def revoke_share(self, workspace_id: int, share_id: int, now: float) -> bool: ...

    # the overview (storage/overview.py, one SQL for both backends) -------------

    async def period_bars(
        self,
        workspace_id: int,
        starts: Sequence[int],
        end: int,
        previous: int,
        scope: Scope = EVERY,
    ) -> tuple[list[tuple[int, int]], tuple[int, int]]:
        """The workspace's (up, down) per bar (each from its start to the next's, the
        last to `end`) and in the previous period (`previous` to the first start)."""

    async def movers(
        self,
        workspace_id: int,
        previous: int,
        start: int,
        end: int,
        limit: int,
        scope: Scope = EVERY,
    ) -> list[Mover]:
        """The counters whose events in the period differ most from the previous one's."""

    async def sparklines(
        self, counter_ids: Sequence[int], starts: Sequence[int], end: int
    ) -> dict[int, list[tuple[int, int]]]:
        """Each counter's (up, down) per bar, in one statement."""

    async def counter_page(
        self,
        workspace_id: int,
        *,
        search: str = "",
        sort: str = "name",
        descending: bool = False,
        limit: int = 50,
        after: str = "",
        before: str = "",
        offset: int = 0,
        scope: Scope = EVERY,
    ) -> CounterPage:
        """One page of the workspace's counters whose name contains `search` (any case),
        sorted by `sort` (a key of SORTS), after the cursor `after` or before `before`
        (tally.storage.paging) or the first `offset`, and how many match in all."""

    # alerts (storage/alerts.py, one SQL for both backends) --------------------------

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
        """Conflict if the workspace has `limit` webhooks already."""

    async def list_webhooks(self, workspace_id: int) -> list[Webhook]: ...

    async def get_webhook(self, workspace_id: int, webhook_id: int) -> Webhook | None: ...

    async def change_webhook(
        self, workspace_id: int, webhook_id: int, *, url: str, secret: str, description: str
    ) -> Webhook | None: ...

    async def delete_webhook(self, workspace_id: int, webhook_id: int) -> bool:
        """Delete the webhook with its rules and their firings."""

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
        """Save the rule and watch its counter (or the workspace's) in one transaction;
        Conflict if the workspace has `limit` rules already."""

    async def has_alert_rules(self) -> bool:
        """Whether any workspace has a rule."""

    async def list_alert_rules(self, workspace_id: int) -> list[AlertRule]: ...

    async def get_alert_rule(self, workspace_id: int, rule_id: int) -> AlertRule | None: ...

    async def delete_alert_rule(self, workspace_id: int, rule_id: int) -> bool: ...

    async def claim_firings(self, node: str, now: float, lease: float, limit: int) -> list[Firing]:
        """Lease up to `limit` due firings to `node`; none that another node holds."""

    async def next_firing_at(self) -> float | None: ...

    async def release_firings(self, node: str) -> int:
        """Free the leases `node` holds (SQLite: every lease); how many."""

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
        """Log one try; settle the firing (state 1, 2) or schedule it again (0)."""

    async def resend_firing(self, workspace_id: int, firing_id: int, now: float) -> bool: ...

    async def list_firings(
        self, workspace_id: int, *, limit: int = 50, before: int | None = None
    ) -> list[Firing]: ...

    async def get_firing(self, workspace_id: int, firing_id: int) -> Firing | None: ...

    async def list_attempts(self, firing_id: int) -> list[DeliveryAttempt]: ...

    async def prune_firings(self, before: float, limit: int = 1000) -> int:
        """Delete up to `limit` settled firings fired before `before`; how many."""

    async def sweep_quiet(self, now: float) -> int:
        """Fire the quiet rules due now, each quiet spell once (any number of nodes)."""
