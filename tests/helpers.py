"""Assertions shared by the HTTP tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import httpx

from tally.models import CounterRecord, CounterRules
from tally.storage import Store

if TYPE_CHECKING:
    from conftest import Harness


def bearer(token: str | None) -> dict[str, str]:
    """The Authorization header for `token` (none for anonymous)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def assert_error(r: httpx.Response, status: int) -> None:
    """`r` has `status` and exactly the body {"code": "<status>", "message": "<non-empty>"}."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "message"}, body
    assert body["code"] == str(status)
    assert isinstance(body["message"], str)
    assert body["message"].strip()


async def flush(nodes: Iterable[Harness]) -> None:
    """Commit everything the nodes hold in memory (buffered mode)."""
    for node in nodes:
        assert node.app.services is not None
        await node.app.services.writes.flush()


async def import_bounds(
    store: Store, counter_id: int, floor: int | None, ceiling: int | None
) -> None:
    """Give the counter bounds its value may already break, as an import does (the file
    is authoritative: import_counters is not checked against the value), keeping the
    rest of it."""
    c = await store.get_counter_by_id(counter_id)
    assert c is not None
    record = CounterRecord(
        c.name,
        c.description,
        c.private,
        c.up_count,
        c.down_count,
        c.created_at,
        c.updated_at,
        hours=None,
        rules=CounterRules(floor, ceiling, c.origins),
    )
    await store.import_counters(c.workspace_id, [record])
