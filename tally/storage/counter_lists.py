"""The counter list of a workspace, for the dashboard and the management API: keyset
pages (tally.storage.paging) in any sort, a search by any part of the name, and how many
match.

`CounterLists` is mixed into `DashboardTables` (so into both stores): it reads through
their `_fetch` and `_one`, their case-insensitive LIKE and code-point collation, and asks
each backend's search index through `_indexed` (SQLite: FTS5 trigram `counter_names`;
PostgreSQL: pg_trgm on `counter_names`). The totals without a search come from
`workspace_counts`, kept by triggers (migrations sqlite/0006, postgresql/0009).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tally.errors import BadRequest
from tally.models import CounterPage
from tally.storage import paging
from tally.storage.overview import EVERY, Scope
from tally.storage.rows import COUNTER_COLUMNS, to_counter

Params = Sequence[Any]


def like_pattern(text: str) -> str:
    """`text` as a LIKE pattern matching it anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# how many matches of a search are counted at most (a count of them all would read
# every match of a common word)
SEARCH_COUNT_CAP = 10_000
# a search the index cannot serve (under 3 characters) reads the workspace's counters:
# refused in a workspace bigger than this, where it would take long
SHORT_SEARCH_MAX = 100_000


class CounterLists:
    """The counter list over `_fetch` and `_one` (see the module doc)."""

    _ilike = "LIKE"  # case-insensitive LIKE
    _collate = ""  # order by code point

    async def _fetch(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def _one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        rows = await self._fetch(sql, params)
        return rows[0] if rows else None

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
        sorted by `sort` (a key of SORTS): the `limit` after the cursor `after`, or
        before `before` (tally.storage.paging), or after the first `offset`; and how many
        match in all (of a search, SEARCH_COUNT_CAP at most). BadRequest for a cursor
        this list did not give."""
        cursor = before or after
        forward = not before
        key = paging.decode(cursor, sort) if cursor else None
        source, where, params, total, exact = await self._search(workspace_id, search)
        if scope.public_only:  # a shared overview's list: its total counted (capped)
            condition, values = scope.condition()
            where, params = where + condition, [*params, *values]
            found = await self._count_capped(source, where, params)
            total, exact = min(found, SEARCH_COUNT_CAP), found <= SEARCH_COUNT_CAP
        # rows before the cursor are read backwards, then put back in order
        read_descending = descending if forward else not descending
        order = paging.order(sort, self._collate, read_descending)

        def select(condition: str) -> str:
            return (
                f"SELECT {COUNTER_COLUMNS} FROM {source} JOIN workspaces w "
                f"ON w.id = c.workspace_id WHERE {condition} "
                f"ORDER BY {order} LIMIT %s OFFSET %s"
            )

        if key is None:
            rows = await self._fetch(select(where), (*params, limit + 1, offset))
        else:  # the rows after the key in the page's own order, part by part
            rows = []
            greater = forward != descending
            for condition, values in paging.seek(sort, self._collate, greater, key):
                rows += await self._fetch(
                    select(f"{where} AND {condition}"),
                    (*params, *values, limit + 1 - len(rows), 0),
                )
                if len(rows) > limit:
                    break
        more = len(rows) > limit
        counters = [to_counter(r) for r in rows[:limit]]
        if not forward:
            counters.reverse()
        first = paging.encode(paging.key_of(counters[0], sort)) if counters else None
        last = paging.encode(paging.key_of(counters[-1], sort)) if counters else None
        if forward:
            earlier = bool(cursor) or offset > 0
            return CounterPage(
                counters, total, exact, last if more else None, first if earlier else None
            )
        return CounterPage(counters, total, exact, last, first if more else None)

    def _indexed(self, workspace_id: int, search: str) -> tuple[str, str, list[Any]] | None:
        """The counters whose name contains `search`, from the search index (a
        backend's own): what to read them from (in place of `counters c`), a condition,
        and its parameters; None if the index cannot tell (a search under 3 characters,
        trigrams being its unit)."""
        return None

    async def _search(
        self, workspace_id: int, search: str
    ) -> tuple[str, str, list[Any], int, bool]:
        """What the list of `search` reads from, its WHERE and parameters, how many
        counters match (of a search, SEARCH_COUNT_CAP at most) and whether that is all.

        A search the index serves, with few matches, is read from the index's matches
        (sorted, at most SEARCH_COUNT_CAP of them); one with many reads the list's own
        index in order and filters, where a page's 51 matches come after about
        51 x counters / matches rows; so is a search too short for the index."""
        source = "counters c"
        where = "c.workspace_id = %s"
        params: list[Any] = [workspace_id]
        indexed = self._indexed(workspace_id, search) if search else None
        if indexed is None:
            row = await self._one(
                "SELECT counters FROM workspace_counts WHERE workspace_id = %s", (workspace_id,)
            )
            counters = int(row[0]) if row else 0
            if not search:
                return source, where, params, counters, True
            if counters > SHORT_SEARCH_MAX:
                raise BadRequest(
                    f"search for 3 characters or more in a workspace of more than "
                    f"{SHORT_SEARCH_MAX:,} counters"
                )
        where += f" AND c.name {self._ilike} %s ESCAPE '\\'"
        params.append(like_pattern(search))
        if indexed is not None:
            sparse, condition, more = indexed
            found = await self._count_capped(sparse, f"{where} AND {condition}", [*params, *more])
            if found <= SEARCH_COUNT_CAP:
                return sparse, f"{where} AND {condition}", [*params, *more], found, True
        else:
            found = await self._count_capped(source, where, params)
        return source, where, params, min(found, SEARCH_COUNT_CAP), found <= SEARCH_COUNT_CAP

    async def _count_capped(self, source: str, where: str, params: Params) -> int:
        """How many counters match `where`, SEARCH_COUNT_CAP + 1 at most."""
        row = await self._one(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM {source} WHERE {where} LIMIT %s) m",
            (*params, SEARCH_COUNT_CAP + 1),
        )
        return int(row[0]) if row else 0
