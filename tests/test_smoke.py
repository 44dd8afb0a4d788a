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


async def test_metrics(harness: Harness) -> None:
    """/metrics shows the group commit's counters in the Prometheus text format."""
    ws = await harness.workspace()
    token = await harness.token(ws, Permission.WRITE)
    await harness.get("/v2/ws/hits/up", token)
    r = await harness.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    lines = dict(line.split(" ", 1) for line in r.text.splitlines() if not line.startswith("#"))
    assert int(lines["tally_batches_committed_total"]) >= 1
    assert lines["tally_pending_changes"] == "0"
