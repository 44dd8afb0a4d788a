"""A change of a counter's settings (models.CounterChange) as SQL, shared by the SQL
stores. Each runs it in one transaction: `LOCK` reads the counter's counts and bounds
with its row locked (PostgreSQL adds FOR UPDATE; SQLite's write transaction holds the
database's lock), `check` refuses new bounds that the value read there breaks, then one
UPDATE (`update`) writes every changed column. A failure anywhere rolls it all back,
and no count commits between the check and the save.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tally import rules
from tally.models import CounterChange
from tally.storage.rows import join_origins

LOCK = "SELECT up_count, down_count, min_value, max_value FROM counters WHERE id = %s"


def check(row: Sequence[Any], change: CounterChange) -> None:
    """Conflict (tally.rules.check_value) if the change's bounds move one that the value
    of `row` (a row of LOCK) breaks."""
    if change.bounds is not None:
        up, down, floor, ceiling = row
        rules.check_value((floor, ceiling), *change.bounds, up - down)


def update(counter_id: int, change: CounterChange) -> tuple[str, list[Any]] | None:
    """The UPDATE of `change` (with %s placeholders) and its parameters; None if the
    change sets nothing."""
    columns: list[str] = []
    params: list[Any] = []
    if change.description is not None:
        columns.append("description = %s")
        params.append(change.description)
    if change.private is not None:
        columns.append("private = %s")
        params.append(change.private)
    if change.bounds is not None:
        columns += ["min_value = %s", "max_value = %s"]
        params += list(change.bounds)
    if change.origins is not None:
        columns.append("origins = %s")
        params.append(join_origins(change.origins))
    if change.unique_window is not None:
        columns.append("unique_window = %s")
        params.append(change.unique_window)
    if change.unique_by_address is not None:
        columns.append("unique_by_address = %s")
        params.append(change.unique_by_address)
    if not columns:
        return None
    return f"UPDATE counters SET {', '.join(columns)} WHERE id = %s", [*params, counter_id]
