"""The workspace page's Export button (/w/SLUG/export), in-process on every backend: an
owner's session downloads the same file as the API's Admin download, which imports
elsewhere; other roles and other people get nothing."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from conftest import BrowserFactory, Harness
from test_site_workspaces import member, verified

from tally.imports import import_file, validate
from tally.models import CounterRecord, Permission, Role
from tally.storage import store_from_url

HOUR = int(time.time() // 3600)


async def test_the_owner_downloads_the_workspaces_export(
    harness: Harness, make_browser: BrowserFactory, tmp_path: Path
) -> None:
    """More than a page of counters with their history: the file is the API download's
    (but for its time stamp), valid, and imports into a new database with the same
    counts; another workspace's counters are not in it."""
    b = await verified(harness, make_browser, "ann@example.com")
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    records = [
        CounterRecord(f"c{i}", "", i % 2 == 0, i, 1, 1.0, 2.0, ((HOUR, i, 1),)) for i in range(1200)
    ]
    await harness.store.import_counters(ws.id, records)
    other = await harness.workspace("other")
    await harness.counter(other, "not-mine")
    page = await b.get("/w/ann")
    assert 'href="/w/ann/export"' in page.text
    r = await b.get("/w/ann/export")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    assert r.headers["content-disposition"] == 'attachment; filename="tally-ann.jsonl"'
    assert r.headers["cache-control"] == "no-store"
    api = await harness.get("/export/ann", await harness.token(ws, Permission.ADMIN))
    assert api.status_code == 200
    assert r.content.split(b"\n")[1:] == api.content.split(b"\n")[1:]
    assert b"not-mine" not in r.content
    lines = [orjson.loads(line) for line in r.content.splitlines()]
    assert lines[-1] == {"end": {"workspaces": 1, "counters": 1200, "buckets": 1200}}
    path = tmp_path / "ann.jsonl"
    path.write_bytes(r.content)
    summary = validate(path)
    target = store_from_url(f"sqlite:///{tmp_path / 'copy.db'}", node="test-node")
    await target.open()
    try:
        report = await import_file(target, path, summary)
        assert report.created == 1200
        copy = await target.read_counter("ann", "c777")
        assert copy is not None
        assert (copy.up_count, copy.down_count, copy.private) == (777, 1, False)
    finally:
        await target.close()


@pytest.mark.parametrize("who", ["viewer", "editor", "outsider", "signed-out"])
async def test_only_owners_may_export(
    harness: Harness, make_browser: BrowserFactory, who: str
) -> None:
    """A viewer or editor gets 403 and no button, an outsider 404, a signed-out visitor
    the sign-in page; none gets a line of the file."""
    await verified(harness, make_browser, "ann@example.com")
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    await harness.counter(ws, "secret-counter")
    if who in ("viewer", "editor"):
        role = Role.VIEWER if who == "viewer" else Role.EDITOR
        b = await member(harness, make_browser, "bob@example.com", "ann", role)
        assert 'href="/w/ann/export"' not in (await b.get("/w/ann")).text
        status = 403
    elif who == "outsider":
        b, status = await verified(harness, make_browser, "eve@example.com"), 404
    else:
        b, status = await make_browser(harness), 303
    r = await b.get("/w/ann/export")
    assert r.status_code == status
    assert b"secret-counter" not in r.content
    assert b"tally_export" not in r.content
    if who == "signed-out":
        assert r.headers["location"] == "/login?next=/w/ann/export"
