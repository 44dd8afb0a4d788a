"""Rows to records, shared by the SQL stores: both select the same columns in the same
order (`COUNTER_COLUMNS`, `TOKEN_COLUMNS`, `WORKSPACE_COLUMNS`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tally.models import Counter, Permission, Token, Workspace

COUNTER_COLUMNS = (
    "c.id, c.workspace_id, w.slug, c.name, c.description, c.private, c.up_count, "
    "c.down_count, c.created_at, c.updated_at, w.owner_id, c.min_value, c.max_value, "
    "c.origins, w.origins, w.v1_open, c.unique_window, c.unique_by_address, w.timezone"
)
_COUNTER_WIDTH = 19
WORKSPACE_COLUMNS = "id, slug, name, created_at, v1_open, origins, page_views, honour_dnt, timezone"
TOKEN_COLUMNS = (
    "t.id, t.workspace_id, w.slug, t.name, t.prefix, t.permission, t.created_at, t.revoked_at, "
    "t.expires_at, t.last_used_at, t.created_by"
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
        floor=row[11],
        ceiling=row[12],
        origins=split_origins(row[13]),
        workspace_origins=split_origins(row[14]),
        v1_open=bool(row[15]),
        unique_window=row[16],
        unique_by_address=bool(row[17]),
        workspace_timezone=row[18] or "",
        seq=row[_COUNTER_WIDTH] if len(row) > _COUNTER_WIDTH else 0,
    )


def split_origins(text: str) -> tuple[str, ...]:
    """The origins column (one per line) as a tuple."""
    return tuple(text.split()) if text else ()


def join_origins(origins: tuple[str, ...]) -> str:
    return "\n".join(origins)


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
        created_by=row[10],
    )


def to_workspace(row: Sequence[Any]) -> Workspace:
    return Workspace(
        id=row[0],
        slug=row[1],
        name=row[2],
        created_at=row[3],
        v1_open=bool(row[4]),
        origins=split_origins(row[5]),
        page_views=bool(row[6]),
        honour_dnt=bool(row[7]),
        timezone=row[8] or "",
    )
