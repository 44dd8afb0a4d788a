"""The happy path end to end in-process: the fixtures and the app fit together."""

from __future__ import annotations

from conftest import Harness

from tally.models import Permission


async def test_up_then_get(harness: Harness) -> None:
    """A Write token's up creates the counter; an anonymous get then shows the count."""
    ws = await harness.workspace()
    token = await harness.token(ws, Permission.WRITE)
    r = await harness.get("/v2/ws/hits/up", token)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["up_count"] == 1
    r = await harness.get("/v2/ws/hits")
    assert r.json() == {"code": "200", "data": r.json()["data"]}
    assert r.json()["data"]["up_count"] == 1
