"""Export files: writing a workspace's counters, settings and hourly history as a stream.

Format version 1, JSON lines (one JSON object a line, UTF-8):

    {"tally_export": 1, "exported_at": "2026-11-28T10:00:00Z"}
    {"workspace": {"slug": "demo", "name": "Demo", "created_at": 1764323000.5}}
    {"counter": {"workspace": "demo", "name": "hits", "description": "", "private": false,
                 "up_count": 4, "down_count": 1, "created_at": ..., "updated_at": ...,
                 "hours": [[494534, 3, 1], [494535, 1, 0]]}}
    ...
    {"end": {"workspaces": 1, "counters": 1, "buckets": 2}}

Times are unix seconds (floats, exactly as stored); an hour is the UTC hour index (unix
seconds // 3600). A workspace's line comes before its counters. The `end` line tells a
complete file from a cut one. Tokens are never exported (their keyed hashes are useless
without the server's key, and a token should not travel in a file).

CSV version 1 carries the totals and settings only: a first row `tally-export-csv,1`,
then the header row `CSV_HEADER`, then one row per counter.

Export reads a page of counters (and their buckets) at a time: memory stays bounded
whatever the number of counters. Pages are read one after another, not in one snapshot:
on a server that is counting, each counter is exact as of its page.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from tally.models import Counter, Workspace
from tally.storage import Store

VERSION = 1
CSV_MAGIC = ("tally-export-csv", "1")
CSV_HEADER = (
    "workspace",
    "name",
    "description",
    "private",
    "up_count",
    "down_count",
    "created_at",
    "updated_at",
)
PAGE = 1000  # counters read (and held) at a time


def rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _counter(ws: Workspace, c: Counter) -> dict[str, Any]:
    return {
        "workspace": ws.slug,
        "name": c.name,
        "description": c.description,
        "private": c.private,
        "up_count": c.up_count,
        "down_count": c.down_count,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }


async def pages(store: Store, ws: Workspace) -> AsyncIterator[list[Counter]]:
    """The workspace's counters, a page at a time, in id order."""
    after = 0
    while True:
        page = await store.list_counters_after(ws.id, after, PAGE)
        if not page:
            return
        yield page
        after = page[-1].id


Progress = Callable[[int], None]  # called with the number of counters just written


async def export_jsonl(
    store: Store, workspaces: list[Workspace], progress: Progress | None = None
) -> AsyncIterator[bytes]:
    """The export file of `workspaces`, in chunks of about a page of counters each."""
    yield orjson.dumps({"tally_export": VERSION, "exported_at": rfc3339(time.time())}) + b"\n"
    counters = buckets = 0
    for ws in workspaces:
        head = {"slug": ws.slug, "name": ws.name, "created_at": ws.created_at}
        yield orjson.dumps({"workspace": head}) + b"\n"
        async for page in pages(store, ws):
            hours: dict[int, list[tuple[int, int, int]]] = {}
            for counter_id, hour, up, down in await store.read_buckets([c.id for c in page]):
                hours.setdefault(counter_id, []).append((hour, up, down))
            lines = []
            for c in page:
                record = _counter(ws, c)
                record["hours"] = hours.get(c.id, [])
                buckets += len(record["hours"])
                lines.append(orjson.dumps({"counter": record}))
            counters += len(page)
            yield b"\n".join(lines) + b"\n"
            if progress is not None:
                progress(len(page))
    end = {"workspaces": len(workspaces), "counters": counters, "buckets": buckets}
    yield orjson.dumps({"end": end}) + b"\n"


async def export_csv(
    store: Store, workspaces: list[Workspace], progress: Progress | None = None
) -> AsyncIterator[bytes]:
    """The totals and settings of `workspaces` as CSV version 1."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_MAGIC)
    writer.writerow(CSV_HEADER)
    for ws in workspaces:
        async for page in pages(store, ws):
            for c in page:
                row = _counter(ws, c)
                row["private"] = "true" if c.private else "false"
                row["created_at"], row["updated_at"] = repr(c.created_at), repr(c.updated_at)
                writer.writerow([row[k] for k in CSV_HEADER])
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
            if progress is not None:
                progress(len(page))
    yield out.getvalue().encode()
