"""The `shares` table (migrations sqlite/0011, postgresql/0015), one SQL for both
backends, over the store's `_fetch` and `_change` (mixed into DashboardTables)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tally.models import Share

Params = Sequence[Any]
Statement = tuple[str, Params]

_SHARE = (
    "s.id, s.workspace_id, w.slug, s.counter_id, s.public, s.prefix, s.name, "
    "s.include_private, s.created_by, s.created_at, s.expires_at, s.revoked_at"
)


def _share(row: Sequence[Any]) -> Share:
    return Share(
        id=int(row[0]),
        workspace_id=int(row[1]),
        workspace_slug=row[2],
        counter_id=None if row[3] is None else int(row[3]),
        public=bool(row[4]),
        prefix=row[5],
        name=row[6],
        include_private=tuple(int(i) for i in row[7].split()),
        created_by=row[8],
        created_at=row[9],
        expires_at=row[10],
        revoked_at=row[11],
    )


class ShareTables:
    """Create, list, find and revoke shares."""

    async def _fetch(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def _change(
        self, statements: Sequence[Statement], *, settings_kept: bool = False
    ) -> list[list[tuple[Any, ...]]]:
        raise NotImplementedError

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
        """A new share. A public one replaces (revokes) the live public share of the same
        page, in the same transaction: a page has one public URL."""
        same = "counter_id IS NULL" if counter_id is None else "counter_id = %s"
        rows = await self._change(
            [
                (
                    f"UPDATE shares SET revoked_at = %s WHERE workspace_id = %s AND {same} "
                    "AND public = %s AND revoked_at IS NULL AND %s",
                    (
                        now,
                        workspace_id,
                        *([] if counter_id is None else [counter_id]),
                        True,
                        public,
                    ),
                ),
                (
                    "INSERT INTO shares (workspace_id, counter_id, public, secret_hash, prefix, "
                    "name, include_private, created_by, created_at, expires_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (
                        workspace_id,
                        counter_id,
                        public,
                        secret_hash,
                        prefix,
                        name,
                        "\n".join(str(i) for i in include_private),
                        created_by,
                        now,
                        expires_at,
                    ),
                ),
            ],
            settings_kept=True,
        )
        share = await self.get_share(workspace_id, int(rows[1][0][0]))
        assert share is not None
        return share

    async def get_share(self, workspace_id: int, share_id: int) -> Share | None:
        rows = await self._fetch(
            f"SELECT {_SHARE} FROM shares s JOIN workspaces w ON w.id = s.workspace_id "
            "WHERE s.id = %s AND s.workspace_id = %s",
            (share_id, workspace_id),
        )
        return _share(rows[0]) if rows else None

    async def list_shares(self, workspace_id: int) -> list[Share]:
        rows = await self._fetch(
            f"SELECT {_SHARE} FROM shares s JOIN workspaces w ON w.id = s.workspace_id "
            "WHERE s.workspace_id = %s ORDER BY s.id",
            (workspace_id,),
        )
        return [_share(r) for r in rows]

    async def find_secret_share(self, secret_hash: str) -> Share | None:
        """The share of a secret link, revoked and expired ones included."""
        rows = await self._fetch(
            f"SELECT {_SHARE} FROM shares s JOIN workspaces w ON w.id = s.workspace_id "
            "WHERE s.secret_hash = %s",
            (secret_hash,),
        )
        return _share(rows[0]) if rows else None

    async def find_public_share(self, slug: str, counter_id: int | None) -> Share | None:
        """The newest public share of the page (the workspace's overview, or its counter
        `counter_id`), revoked and expired ones included."""
        same = "s.counter_id IS NULL" if counter_id is None else "s.counter_id = %s"
        rows = await self._fetch(
            f"SELECT {_SHARE} FROM shares s JOIN workspaces w ON w.id = s.workspace_id "
            f"WHERE w.slug = %s AND {same} AND s.public = %s ORDER BY s.id DESC LIMIT 1",
            (slug, *([] if counter_id is None else [counter_id]), True),
        )
        return _share(rows[0]) if rows else None

    async def revoke_share(self, workspace_id: int, share_id: int, now: float) -> bool:
        """False if the workspace has no such share or it was already revoked."""
        rows = await self._change(
            [
                (
                    "UPDATE shares SET revoked_at = %s WHERE id = %s AND workspace_id = %s "
                    "AND revoked_at IS NULL RETURNING id",
                    (now, share_id, workspace_id),
                )
            ],
            settings_kept=True,
        )
        return bool(rows[0])
