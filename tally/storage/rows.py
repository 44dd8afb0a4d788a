"""Rows to records, shared by the SQL stores: both select the same columns in the same
order (`COUNTER_COLUMNS`, `TOKEN_COLUMNS`, workspaces' id, slug, name, created_at)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tally.models import Counter, Permission, Token, Workspace

COUNTER_COLUMNS = (
    "c.id, c.workspace_id, w.slug, c.name, c.description, c.private, c.up_count, "
    "c.down_count, c.created_at, c.updated_at, w.owner_id"
)
TOKEN_COLUMNS = (
    "t.id, t.workspace_id, w.slug, t.name, t.prefix, t.permission, t.created_at, t.revoked_at, "
    "t.expires_at, t.last_used_at"
)


def to_counter(row: Sequence[Any]) -> Counter:
    """A counter from COUNTER_COLUMNS, optionally followed by the node's seq."""
    return Counter(
        id=row[0],
        workspace_id=row[1],
        workspace_slug=row[2],
        name=row[3],
        description=row[4],
        private=bool(row[5]),
        up_count=row[6],
        down_count=row[7],
        created_at=row[8],
        updated_at=row[9],
        owner_id=row[10] or 0,
        seq=row[11] if len(row) > 11 else 0,
    )


def to_token(row: Sequence[Any]) -> Token:
    return Token(
        id=row[0],
        workspace_id=row[1],
        workspace_slug=row[2],
        name=row[3],
        prefix=row[4],
        permission=Permission(row[5]),
        created_at=row[6],
        revoked_at=row[7],
        expires_at=row[8],
        last_used_at=row[9],
    )


def to_workspace(row: Sequence[Any]) -> Workspace:
    return Workspace(id=row[0], slug=row[1], name=row[2], created_at=row[3])
