"""The dashboard's tables, one SQL for both backends: accounts, sessions, single-use
links (`one_time_tokens`), workspace members, the dashboard's workspace, token and
counter management (rename, delete, last use), and the counter quota (`QUOTA`, checked
by each store in the transaction that creates a counter). The counter list is
`CounterLists` (tally/storage/counter_lists.py), a base of this class, as are the alert
tables (`AlertTables`, tally/storage/alerts.py).

`DashboardTables` is mixed into `SQLiteStore` and `PostgresStore`. It writes its SQL
with `%s` placeholders; each backend runs it through `_fetch` (one read statement) and
`_change` (statements in one transaction), and names its own case-insensitive LIKE and
code-point collation. None of this is on the API's hot path, except `touch_token`, which
the token verifier calls at most once a minute per token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tally.errors import QuotaReached
from tally.models import (
    Account,
    Counter,
    Member,
    Membership,
    OneTimeToken,
    Role,
    Session,
    Workspace,
)
from tally.storage.alerts import AlertTables
from tally.storage.counter_lists import like_pattern
from tally.storage.overview import OverviewReads
from tally.storage.paging import SORTS
from tally.storage.rows import COUNTER_COLUMNS, to_counter, to_workspace
from tally.storage.shares import ShareTables

__all__ = ["QUOTA", "SORTS", "DashboardTables", "check_quota", "like_pattern"]

Params = Sequence[Any]
Statement = tuple[str, Params]

_ACCOUNT = "a.id, a.email, a.password_hash, a.verified_at IS NOT NULL, a.created_at"
_ONE_TIME = "id, purpose, account_id, workspace_id, email, role, created_at, expires_at"
_WORKSPACE = (  # WORKSPACE_COLUMNS
    "w.id, w.slug, w.name, w.created_at, w.v1_open, w.origins, w.page_views, w.honour_dnt, "
    "w.timezone"
)
# the first owner's account id is the API's user_id
_SET_OWNER = (
    "UPDATE workspaces SET owner_id = (SELECT MIN(account_id) FROM members "
    "WHERE workspace_id = %s AND role = 3) WHERE id = %s"
)
OWNER = int(Role.OWNER)
# Taken first by a change of a workspace's members that must see the others' (the last
# owner stays): PostgreSQL runs each statement on a snapshot taken when it starts (READ
# COMMITTED), so a concurrent change of the same workspace waits on this row lock and
# then sees this one's result. SQLite's one writer runs transactions one at a time.
_LOCK_WORKSPACE = "UPDATE workspaces SET owner_id = owner_id WHERE id = %s"
_ANOTHER_OWNER = (
    "EXISTS (SELECT 1 FROM members o WHERE o.workspace_id = %s AND o.role = 3 "
    "AND o.account_id <> %s)"
)
# the counters a workspace may have, unless it has a quota of its own (the app sets the
# store's `counter_quota` from TALLY_COUNTER_QUOTA; 0: no quota)
DEFAULT_COUNTER_QUOTA = 100_000
# Read in the transaction that creates a counter, after its insert: the count includes
# it. On PostgreSQL the trigger's update of workspace_counts holds the row's lock until
# the commit, so a second node's creation waits and then counts this one.
QUOTA = (
    "SELECT k.counters, COALESCE(w.counter_quota, %s) FROM workspace_counts k "
    "JOIN workspaces w ON w.id = k.workspace_id WHERE k.workspace_id = %s"
)


def _account(row: Sequence[Any]) -> Account:
    return Account(int(row[0]), row[1], row[2], bool(row[3]), row[4])


def _one_time(row: Sequence[Any]) -> OneTimeToken:
    return OneTimeToken(
        id=int(row[0]),
        purpose=row[1],
        account_id=row[2],
        workspace_id=row[3],
        email=row[4],
        role=Role(row[5]) if row[5] is not None else None,
        created_at=row[6],
        expires_at=row[7],
        used_at=row[8] if len(row) > 8 else None,
        created_by=row[9] if len(row) > 9 else None,
    )


def check_quota(row: Sequence[Any] | None) -> None:
    """Raise QuotaReached if QUOTA's row shows more counters than the quota (0: none)."""
    if row is not None and row[1] and int(row[0]) > int(row[1]):
        raise QuotaReached(
            f"the workspace has reached its quota of {int(row[1])} counters: "
            "delete some, or ask for a bigger quota"
        )


class DashboardTables(AlertTables, OverviewReads, ShareTables):
    """The dashboard's store methods over `_fetch` and `_change` (see the module doc)."""

    counter_quota = DEFAULT_COUNTER_QUOTA  # of a workspace without its own (0: none)
    dialect: str  # the store's (Store.dialect)

    async def _change(
        self, statements: Sequence[Statement], *, settings_kept: bool = False
    ) -> list[list[tuple[Any, ...]]]:
        """Run `statements` in one transaction; the rows each returned. `settings_kept`:
        they change nothing a counter lookup returns (the node's cached lookups stay:
        Store.settings_known)."""
        raise NotImplementedError

    # accounts ----------------------------------------------------------------

    async def create_account(self, email: str, password_hash: str, now: float) -> Account:
        """Raises Conflict if an account has this email (in any letter case)."""
        rows = await self._change(
            [
                (
                    "INSERT INTO accounts (email, email_key, password_hash, created_at) "
                    "VALUES (%s, %s, %s, %s) RETURNING id",
                    (email, email.lower(), password_hash, now),
                )
            ]
        )
        return Account(int(rows[0][0][0]), email, password_hash, False, now)

    async def get_account(self, account_id: int) -> Account | None:
        row = await self._one(f"SELECT {_ACCOUNT} FROM accounts a WHERE a.id = %s", (account_id,))
        return _account(row) if row else None

    async def find_account(self, email: str) -> Account | None:
        row = await self._one(
            f"SELECT {_ACCOUNT} FROM accounts a WHERE a.email_key = %s", (email.lower(),)
        )
        return _account(row) if row else None

    async def count_accounts(self) -> int:
        row = await self._one("SELECT COUNT(*) FROM accounts")
        return int(row[0]) if row else 0

    async def set_password(
        self, account_id: int, password_hash: str, now: float, *, rehash: bool = False
    ) -> None:
        """Store a new password hash; unless it is the same password rehashed, every unused
        reset link of the account dies with the password it was asked for, in the same
        transaction."""
        statements: list[Statement] = [
            ("UPDATE accounts SET password_hash = %s WHERE id = %s", (password_hash, account_id))
        ]
        if not rehash:
            statements.append(
                (
                    "UPDATE one_time_tokens SET used_at = %s WHERE account_id = %s "
                    "AND purpose = 'reset' AND used_at IS NULL",
                    (now, account_id),
                )
            )
        await self._change(statements)

    async def mark_verified(self, account_id: int, now: float) -> None:
        await self._change(
            [
                (
                    "UPDATE accounts SET verified_at = %s WHERE id = %s AND verified_at IS NULL",
                    (now, account_id),
                )
            ]
        )

    # sessions ----------------------------------------------------------------

    async def create_session(
        self, session_hash: str, account_id: int, now: float, expires_at: float
    ) -> None:
        await self._change(
            [
                (
                    "INSERT INTO sessions (hash, account_id, created_at, expires_at) "
                    "VALUES (%s, %s, %s, %s)",
                    (session_hash, account_id, now, expires_at),
                ),
                (
                    "DELETE FROM sessions WHERE account_id = %s AND expires_at <= %s",
                    (account_id, now),
                ),
            ]
        )

    async def find_session(self, session_hash: str, now: float) -> Session | None:
        """The unexpired session with this hash, with its account."""
        row = await self._one(
            f"SELECT {_ACCOUNT}, s.created_at, s.expires_at FROM sessions s "
            "JOIN accounts a ON a.id = s.account_id WHERE s.hash = %s AND s.expires_at > %s",
            (session_hash, now),
        )
        return Session(_account(row), row[5], row[6]) if row else None

    async def delete_session(self, session_hash: str) -> None:
        await self._change([("DELETE FROM sessions WHERE hash = %s", (session_hash,))])

    async def delete_sessions(self, account_id: int) -> int:
        """End every session of the account; how many there were."""
        rows = await self._change(
            [("DELETE FROM sessions WHERE account_id = %s RETURNING hash", (account_id,))]
        )
        return len(rows[0])

    # single-use links --------------------------------------------------------

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
    ) -> None:
        await self._change(
            [
                (
                    "INSERT INTO one_time_tokens (hash, purpose, account_id, workspace_id, "
                    "email, role, created_at, expires_at, created_by) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        token_hash,
                        purpose,
                        account_id,
                        workspace_id,
                        email,
                        None if role is None else int(role),
                        now,
                        expires_at,
                        created_by,
                    ),
                ),
                # links a week past their expiry are of no use, even to explain a refusal
                ("DELETE FROM one_time_tokens WHERE expires_at < %s", (now - 7 * 86400,)),
            ]
        )

    async def peek_one_time(self, purpose: str, token_hash: str, now: float) -> OneTimeToken | None:
        """The unused, unexpired link with this hash, left unused."""
        row = await self._one(
            f"SELECT {_ONE_TIME} FROM one_time_tokens WHERE hash = %s AND purpose = %s "
            "AND used_at IS NULL AND expires_at > %s",
            (token_hash, purpose, now),
        )
        return _one_time(row) if row else None

    async def use_one_time(
        self, purpose: str, token_hash: str, now: float, *, account_id: int | None = None
    ) -> OneTimeToken | None:
        """Mark the link used and return it; None if it is unknown, used or expired (so of
        two racing uses, one wins). `account_id`: the account that used it, if given."""
        rows = await self._change(
            [
                (
                    "UPDATE one_time_tokens SET used_at = %s, "
                    "account_id = COALESCE(%s, account_id) WHERE hash = %s AND purpose = %s "
                    f"AND used_at IS NULL AND expires_at > %s RETURNING {_ONE_TIME}",
                    (now, account_id, token_hash, purpose, now),
                )
            ]
        )
        return _one_time(rows[0][0]) if rows[0] else None

    async def find_one_time(self, purpose: str, token_hash: str) -> OneTimeToken | None:
        """The link with this hash whatever its state, with `used_at` and `created_by`."""
        row = await self._one(
            f"SELECT {_ONE_TIME}, used_at, created_by FROM one_time_tokens "
            "WHERE hash = %s AND purpose = %s",
            (token_hash, purpose),
        )
        return _one_time(row) if row else None

    async def list_invites(self, workspace_id: int, now: float) -> list[OneTimeToken]:
        rows = await self._fetch(
            f"SELECT {_ONE_TIME} FROM one_time_tokens WHERE workspace_id = %s "
            "AND purpose = 'invite' AND used_at IS NULL AND expires_at > %s ORDER BY id",
            (workspace_id, now),
        )
        return [_one_time(r) for r in rows]

    async def cancel_invite(self, workspace_id: int, invite_id: int, now: float) -> bool:
        rows = await self._change(
            [
                (
                    "UPDATE one_time_tokens SET used_at = %s WHERE id = %s AND workspace_id = %s "
                    "AND purpose = 'invite' AND used_at IS NULL RETURNING id",
                    (now, invite_id, workspace_id),
                )
            ]
        )
        return bool(rows[0])

    # members -----------------------------------------------------------------

    async def add_member(self, workspace_id: int, account_id: int, role: Role, now: float) -> None:
        """Add the account to the workspace, or change its role if it is a member."""
        await self._change(
            [
                (
                    "INSERT INTO members (workspace_id, account_id, role, created_at) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (workspace_id, account_id) "
                    "DO UPDATE SET role = excluded.role",
                    (workspace_id, account_id, int(role), now),
                ),
                (_SET_OWNER, (workspace_id, workspace_id)),
            ]
        )

    async def remove_member(self, workspace_id: int, account_id: int) -> bool:
        """Remove the member unless it is the workspace's last owner; False if it was no
        member or is the last owner. One statement after the workspace's lock: two
        owners leaving at once leave one."""
        rows = await self._change(
            [
                (_LOCK_WORKSPACE, (workspace_id,)),
                (
                    "DELETE FROM members WHERE workspace_id = %s AND account_id = %s "
                    f"AND (role <> %s OR {_ANOTHER_OWNER}) RETURNING account_id",
                    (workspace_id, account_id, OWNER, workspace_id, account_id),
                ),
                (_SET_OWNER, (workspace_id, workspace_id)),
            ]
        )
        return bool(rows[1])

    async def set_member_role(self, workspace_id: int, account_id: int, role: Role) -> bool:
        """Change a member's role unless that leaves the workspace without an owner;
        False if it is no member or the last owner stepping down (atomic, as
        `remove_member`)."""
        keeps = "" if role is Role.OWNER else f" AND (role <> %s OR {_ANOTHER_OWNER})"
        guard = () if role is Role.OWNER else (OWNER, workspace_id, account_id)
        rows = await self._change(
            [
                (_LOCK_WORKSPACE, (workspace_id,)),
                (
                    "UPDATE members SET role = %s WHERE workspace_id = %s AND account_id = %s"
                    f"{keeps} RETURNING account_id",
                    (int(role), workspace_id, account_id, *guard),
                ),
                (_SET_OWNER, (workspace_id, workspace_id)),
            ]
        )
        return bool(rows[1])

    async def claim_bootstrap(self, slug: str, account_id: int, now: float) -> bool:
        """Make the account the owner of the workspace `slug` if that has no member and
        no account is older (the first account owns the bootstrap workspace); whether it
        did. Atomic: of two first sign-ups at once, one owns it."""
        rows = await self._change(
            [
                ("UPDATE workspaces SET owner_id = owner_id WHERE slug = %s", (slug,)),
                (
                    "INSERT INTO members (workspace_id, account_id, role, created_at) "
                    "SELECT w.id, %s, %s, %s FROM workspaces w WHERE w.slug = %s "
                    "AND NOT EXISTS (SELECT 1 FROM members m WHERE m.workspace_id = w.id) "
                    "AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id < %s) "
                    "RETURNING workspace_id",
                    (account_id, OWNER, now, slug, account_id),
                ),
                (
                    "UPDATE workspaces SET owner_id = (SELECT MIN(account_id) FROM members "
                    "WHERE workspace_id = workspaces.id AND role = 3) WHERE slug = %s",
                    (slug,),
                ),
            ]
        )
        return bool(rows[1])

    async def drop_grants(
        self, workspace_id: int, account_id: int, now: float, *, revoke_tokens: bool
    ) -> tuple[int, int]:
        """What a member leaves behind in a workspace: cancel the invitations they sent
        and (if `revoke_tokens`) revoke the tokens they made there, in one transaction;
        (tokens revoked, invitations cancelled)."""
        statements: list[Statement] = [
            (
                "UPDATE one_time_tokens SET used_at = %s WHERE workspace_id = %s "
                "AND created_by = %s AND purpose = 'invite' AND used_at IS NULL RETURNING id",
                (now, workspace_id, account_id),
            )
        ]
        if revoke_tokens:
            statements.append(
                (
                    "UPDATE tokens SET revoked_at = %s WHERE workspace_id = %s "
                    "AND created_by = %s AND revoked_at IS NULL RETURNING id",
                    (now, workspace_id, account_id),
                )
            )
        rows = await self._change(statements)
        return (len(rows[1]) if revoke_tokens else 0), len(rows[0])

    async def token_creators(self, workspace_id: int) -> dict[int, str]:
        """The email of the account that made each of the workspace's tokens, by token id
        (tokens the operator or the management API made are not in it)."""
        rows = await self._fetch(
            "SELECT t.id, a.email FROM tokens t JOIN accounts a ON a.id = t.created_by "
            "WHERE t.workspace_id = %s",
            (workspace_id,),
        )
        return {int(r[0]): r[1] for r in rows}

    async def list_members(self, workspace_id: int) -> list[Member]:
        rows = await self._fetch(
            "SELECT m.workspace_id, m.account_id, a.email, m.role, m.created_at FROM members m "
            "JOIN accounts a ON a.id = m.account_id WHERE m.workspace_id = %s "
            "ORDER BY a.email_key",
            (workspace_id,),
        )
        return [Member(r[0], r[1], r[2], Role(r[3]), r[4]) for r in rows]

    async def member_role(self, workspace_id: int, account_id: int) -> Role | None:
        row = await self._one(
            "SELECT role FROM members WHERE workspace_id = %s AND account_id = %s",
            (workspace_id, account_id),
        )
        return Role(row[0]) if row else None

    async def memberships(self, account_id: int) -> list[Membership]:
        rows = await self._fetch(
            f"SELECT {_WORKSPACE}, m.role FROM members m JOIN workspaces w "
            f"ON w.id = m.workspace_id WHERE m.account_id = %s ORDER BY w.slug{self._collate}",
            (account_id,),
        )
        return [Membership(to_workspace(r), Role(r[9])) for r in rows]

    # workspaces --------------------------------------------------------------

    async def get_workspace_by_id(self, workspace_id: int) -> Workspace | None:
        row = await self._one(
            f"SELECT {_WORKSPACE} FROM workspaces w WHERE w.id = %s", (workspace_id,)
        )
        return to_workspace(row) if row else None

    async def rename_workspace(self, workspace_id: int, name: str) -> None:
        await self._change(
            [("UPDATE workspaces SET name = %s WHERE id = %s", (name, workspace_id))]
        )

    async def set_workspace_timezone(self, workspace_id: int, timezone: str) -> None:
        """The workspace's time zone, an IANA name checked by tally.periods.check_zone
        ("": the server's, TALLY_TIMEZONE)."""
        await self._change(
            [("UPDATE workspaces SET timezone = %s WHERE id = %s", (timezone, workspace_id))]
        )

    async def delete_workspace(self, workspace_id: int) -> bool:
        """Delete the workspace with its counters, their hourly history and its hourly
        totals, its tokens, members and invitations (the rest by ON DELETE CASCADE).
        The totals last: a batch that held one of its counters has committed by then
        (postgresql/0016)."""
        lock: list[Statement] = []
        if self.dialect == "postgresql":  # the buckets' locks in a batch's order first
            lock.append(
                (
                    "SELECT count(*) FROM (SELECT 1 FROM counter_hours WHERE counter_id IN "
                    "(SELECT id FROM counters WHERE workspace_id = %s) "
                    "ORDER BY counter_id, hour FOR UPDATE) AS locked",
                    (workspace_id,),
                )
            )
        rows = await self._change(
            [
                *lock,
                (
                    "DELETE FROM counter_hours WHERE counter_id IN "
                    "(SELECT id FROM counters WHERE workspace_id = %s)",
                    (workspace_id,),
                ),
                ("DELETE FROM workspaces WHERE id = %s RETURNING id", (workspace_id,)),
                ("DELETE FROM workspace_hours WHERE workspace_id = %s", (workspace_id,)),
            ]
        )
        return bool(rows[-2])

    # tokens ------------------------------------------------------------------

    async def touch_token(self, token_id: int, now: float) -> None:
        """Record the token's last use (the verifier calls this at most once a minute per
        token, so with many active tokens often: it must not drop the cached lookups)."""
        await self._change(
            [("UPDATE tokens SET last_used_at = %s WHERE id = %s", (now, token_id))],
            settings_kept=True,
        )

    # counters ----------------------------------------------------------------

    async def counter_usage(self, workspace_id: int) -> tuple[int, int | None]:
        """How many counters the workspace has, and its own quota (None: the server's)."""
        row = await self._one(
            "SELECT k.counters, w.counter_quota FROM workspace_counts k "
            "JOIN workspaces w ON w.id = k.workspace_id WHERE k.workspace_id = %s",
            (workspace_id,),
        )
        if row is None:
            return 0, None
        return int(row[0]), None if row[1] is None else int(row[1])

    async def set_counter_quota(self, workspace_id: int, quota: int | None) -> None:
        """Give the workspace a quota of its own (0: none), or the server's (None). Its
        counters beyond a lowered quota stay; no new one is created."""
        await self._change(
            [("UPDATE workspaces SET counter_quota = %s WHERE id = %s", (quota, workspace_id))]
        )

    async def get_counter_by_id(self, counter_id: int) -> Counter | None:
        row = await self._one(
            f"SELECT {COUNTER_COLUMNS} FROM counters c JOIN workspaces w "
            "ON w.id = c.workspace_id WHERE c.id = %s",
            (counter_id,),
        )
        return to_counter(row) if row else None

    async def delete_counter(self, counter_id: int) -> bool:
        """Delete the counter and its hourly history, whose sums leave its workspace's
        hourly totals (workspace_hours)."""
        if self.dialect == "postgresql":  # see tally_delete_counter (postgresql/0016)
            rows = await self._change([("SELECT tally_delete_counter(%s)", (counter_id,))])
            return bool(rows[0][0][0])
        # SQLite: one writer, nothing changes the buckets between these statements
        rows = await self._change(
            [
                (
                    "UPDATE workspace_hours SET up = workspace_hours.up - h.up, "
                    "down = workspace_hours.down - h.down "
                    "FROM counter_hours h JOIN counters c ON c.id = h.counter_id "
                    "WHERE h.counter_id = %s AND workspace_hours.workspace_id = c.workspace_id "
                    "AND workspace_hours.hour = h.hour",
                    (counter_id,),
                ),
                ("DELETE FROM counter_hours WHERE counter_id = %s", (counter_id,)),
                ("DELETE FROM counters WHERE id = %s RETURNING id", (counter_id,)),
            ]
        )
        return bool(rows[2])
