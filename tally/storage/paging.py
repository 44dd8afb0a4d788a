"""Keyset paging of a workspace's counters: sort keys and cursors.

A page is asked for by the key of the row it starts after (or ends before), never by an
offset: `WHERE (up_count, id) < (?, ?) ORDER BY up_count DESC, id DESC LIMIT 51` reads
51 rows of the (workspace_id, up_count) index wherever the page is, where `OFFSET
150000` would read and throw away 150,000 rows first. Every sort has its index (the
migrations `sqlite/0006_counter_lists.sql`, `postgresql/0009_counter_lists.sql`); the
id breaks ties, so pages never overlap or skip, except for the name, which is unique in
a workspace.

A cursor is the key of a row, as URL-safe base64 of a JSON array: `["page-7"]` for the
name, `[42, 1093]` (value, id) for the others. It says nothing a page does not show.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from tally.errors import BadRequest
from tally.models import Counter

# sort -> the key's SQL columns (besides the name, the id breaks ties)
SORTS: dict[str, tuple[str, ...]] = {
    "name": ("c.name",),
    "updated": ("c.updated_at", "c.id"),
    "up": ("c.up_count", "c.id"),
    "down": ("c.down_count", "c.id"),
}
_MAX_CURSOR = 1024  # characters: a name of 512 bytes, base64'd, fits

Key = tuple[Any, ...]


def key_of(counter: Counter, sort: str) -> Key:
    """The key of `counter` in the order of `sort`."""
    if sort == "name":
        return (counter.name,)
    value = {"updated": counter.updated_at, "up": counter.up_count, "down": counter.down_count}[
        sort
    ]
    return (value, counter.id)


def encode(key: Key) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode(cursor: str, sort: str) -> Key:
    """The key a cursor of `sort` holds; BadRequest if it is not one."""
    bad = BadRequest("the cursor is not one this list gave (after / before)")
    if len(cursor) > _MAX_CURSOR:
        raise bad
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise bad from None
    if not isinstance(key, list):
        raise bad
    if sort == "name":
        if len(key) != 1 or not isinstance(key[0], str):
            raise bad
        return (key[0],)
    number = int if sort in ("up", "down") else (int, float)
    if (
        len(key) != 2
        or isinstance(key[0], bool)
        or not isinstance(key[0], number)
        or isinstance(key[1], bool)
        or not isinstance(key[1], int)
        or not -(2**63) <= key[1] < 2**63
        or (isinstance(key[0], int) and not -(2**63) <= key[0] < 2**63)
    ):
        raise bad
    return (float(key[0]) if number is not int else key[0], key[1])


def seek(sort: str, collate: str, greater: bool, key: Key) -> list[tuple[str, list[Any]]]:
    """The rows after `key` in the order of `sort` ascending (`greater`) or before it:
    conditions (with `%s` parameters) and their values, each part of the answer, in
    order. Two for a key with a tie-breaker: the key's ties beyond it, then the values
    beyond. (One row-value condition, `(up_count, id) < (?, ?)`, is a range of the
    index on PostgreSQL, but SQLite ranges over up_count alone and reads every tie.)"""
    columns = SORTS[sort]
    op = ">" if greater else "<"
    if len(columns) == 1:
        return [(f"{columns[0]}{collate} {op} %s", [key[0]])]
    column, tie = columns
    return [
        (f"{column} = %s AND {tie} {op} %s", [key[0], key[1]]),
        (f"{column} {op} %s", [key[0]]),
    ]


def order(sort: str, collate: str, descending: bool) -> str:
    direction = " DESC" if descending else ""
    columns = SORTS[sort]
    first = f"{columns[0]}{collate}" if sort == "name" else columns[0]
    return ", ".join(f"{c}{direction}" for c in (first, *columns[1:]))
