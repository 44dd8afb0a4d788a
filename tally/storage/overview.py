"""A period's sums over many counters, for the workspace overview and its counter list
(tally/site/overview.py), one SQL for both backends.

Every read is one statement through the store's `_fetch` (on SQLite a reader thread,
never the event loop), and costs what the buckets of its range cost, never what the
workspace's counters do. The workspace's sums read its hourly totals (workspace_hours,
migrations sqlite/0013, postgresql/0016, kept by every write of a bucket): one row an
hour of the range, whatever its number of buckets. A shared overview's sums (public
counters only) and the counters that changed most read the range of hours from the
index `counter_hours_hour` (migrations sqlite/0011, postgresql/0015) and keep the
workspace's rows by their counter's primary key: they cost what the range's buckets (of
every workspace) cost. A page's sparklines read the
page's counters' buckets by their own key, summed in SQL per bar, grouped by a small
table of bars given as VALUES (the `bars` of tally.periods.Period, each a range of
hours), so only the page's counters times its bars come back.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Params = Sequence[Any]
PREVIOUS = -1  # the bar of the previous period


@dataclass(frozen=True, slots=True)
class Mover:
    """A counter's sums in a period and the one before."""

    id: int
    name: str
    private: bool
    up: int
    down: int
    previous_up: int
    previous_down: int


@dataclass(frozen=True, slots=True)
class Scope:
    """Which counters of a workspace a read sums: all, or (a shared view) the public
    ones and those of `included`."""

    public_only: bool = False
    included: tuple[int, ...] = ()

    def condition(self) -> tuple[str, list[Any]]:
        if not self.public_only:
            return "", []
        if not self.included:
            return " AND c.private = %s", [False]
        marks = ", ".join(["%s"] * len(self.included))
        return f" AND (c.private = %s OR c.id IN ({marks}))", [False, *self.included]


EVERY = Scope()


def _bars(starts: Sequence[int], end: int) -> tuple[str, list[Any]]:
    """VALUES (bar, first hour, end hour), ... of consecutive bars."""
    rows, params = [], []
    for i, start in enumerate(starts):
        rows.append("(%s, %s, %s)")
        params += [i, start, starts[i + 1] if i + 1 < len(starts) else end]
    return ", ".join(rows), params


class OverviewReads:
    """The overview's reads over `_fetch` (see the module doc)."""

    # how the range's buckets meet their counters: SQLite's planner would rather read
    # every counter of the workspace and look up each one's buckets (a million lookups);
    # CROSS JOIN makes it read the range of hours first (its documented way to fix the
    # order of a join), which PostgreSQL's planner finds by itself from its statistics
    _then = "JOIN"

    async def _fetch(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def period_bars(
        self,
        workspace_id: int,
        starts: Sequence[int],
        end: int,
        previous: int,
        scope: Scope = EVERY,
    ) -> tuple[list[tuple[int, int]], tuple[int, int]]:
        """The workspace's (up, down) in each bar (`starts`, the first hour of each,
        the last ending before `end`), and in the previous period (`previous` to the
        first bar's start), of the counters of `scope`: the range's buckets summed per
        hour in SQL, the hours put in their bars here."""
        if scope.public_only:  # some of its counters: their buckets
            where, more = scope.condition()
            rows = await self._fetch(
                f"SELECT h.hour, SUM(h.up), SUM(h.down) FROM counter_hours h {self._then} "
                "counters c ON c.id = h.counter_id "
                f"WHERE h.hour >= %s AND h.hour < %s AND c.workspace_id = %s{where} "
                "GROUP BY h.hour",
                (previous, end, workspace_id, *more),
            )
        else:  # all of them: the workspace's hourly totals, one row an hour
            rows = await self._fetch(
                "SELECT hour, up, down FROM workspace_hours "
                "WHERE workspace_id = %s AND hour >= %s AND hour < %s",
                (workspace_id, previous, end),
            )
        bars = [[0, 0] for _ in starts]
        before = [0, 0]
        for hour, up, down in rows:
            i = bisect.bisect_right(starts, hour) - 1
            into = before if i < 0 else bars[i]
            into[0] += int(up or 0)
            into[1] += int(down or 0)
        return [(u, d) for u, d in bars], (before[0], before[1])

    async def movers(
        self,
        workspace_id: int,
        previous: int,
        start: int,
        end: int,
        limit: int,
        scope: Scope = EVERY,
    ) -> list[Mover]:
        """The `limit` counters whose number of events (up + down) in the period
        (`start` to `end`) differs most from the previous one (`previous` to `start`),
        the biggest change first (then by id); none that did not change."""
        where, more = scope.condition()
        rows = await self._fetch(
            "SELECT m.counter_id, c.name, c.private, m.up, m.down, m.pup, m.pdown FROM ("
            "SELECT h.counter_id, "
            "SUM(CASE WHEN h.hour >= %s THEN h.up ELSE 0 END) AS up, "
            "SUM(CASE WHEN h.hour >= %s THEN h.down ELSE 0 END) AS down, "
            "SUM(CASE WHEN h.hour < %s THEN h.up ELSE 0 END) AS pup, "
            "SUM(CASE WHEN h.hour < %s THEN h.down ELSE 0 END) AS pdown "
            f"FROM counter_hours h {self._then} counters c ON c.id = h.counter_id "
            f"WHERE h.hour >= %s AND h.hour < %s AND c.workspace_id = %s{where} "
            "GROUP BY h.counter_id) m JOIN counters c ON c.id = m.counter_id "
            "WHERE m.up + m.down <> m.pup + m.pdown "
            "ORDER BY abs((m.up + m.down) - (m.pup + m.pdown)) DESC, m.counter_id LIMIT %s",
            (start, start, start, start, previous, end, workspace_id, *more, limit),
        )
        return [
            Mover(int(r[0]), r[1], bool(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]))
            for r in rows
        ]

    async def sparklines(
        self, counter_ids: Sequence[int], starts: Sequence[int], end: int
    ) -> dict[int, list[tuple[int, int]]]:
        """Each counter's (up, down) per bar (`starts` to `end`): one statement for a
        page of counters, whatever their number of buckets."""
        if not counter_ids or not starts:
            return {}
        values, params = _bars(starts, end)
        marks = ", ".join(["%s"] * len(counter_ids))
        rows = await self._fetch(
            f"SELECT h.counter_id, b.column1, SUM(h.up), SUM(h.down) FROM counter_hours h "
            f"JOIN (VALUES {values}) b ON h.hour >= b.column2 AND h.hour < b.column3 "
            f"WHERE h.counter_id IN ({marks}) AND h.hour >= %s AND h.hour < %s "
            "GROUP BY h.counter_id, b.column1",
            (*params, *counter_ids, starts[0], end),
        )
        lines = {counter_id: [(0, 0)] * len(starts) for counter_id in counter_ids}
        for counter_id, bar, up, down in rows:
            lines[int(counter_id)][int(bar)] = (int(up or 0), int(down or 0))
        return lines
