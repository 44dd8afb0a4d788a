"""Export files: writing a workspace's counters, settings and hourly history as a stream.

Format version 2, JSON lines (one JSON object a line, UTF-8):

    {"tally_export": 2, "exported_at": "2026-11-28T10:00:00Z"}
    {"workspace": {"slug": "demo", "name": "Demo", "created_at": 1764323000.5,
                   "v1_open": false, "allowed_origins": ["https://demo.example"],
                   "page_views": false, "honour_dnt": false, "timezone": "Europe/Berlin"}}
    {"counter": {"workspace": "demo", "name": "hits", "description": "", "private": false,
                 "up_count": 4, "down_count": 1, "created_at": ..., "updated_at": ...,
                 "floor": null, "ceiling": 100, "allowed_origins": [], "unique": 86400,
                 "unique_by": "address_agent", "hours": [[494534, 3, 1], [494535, 1, 0]]}}
    ...
    {"end": {"workspaces": 1, "counters": 1, "buckets": 2}}

Every setting of a workspace and a counter is in it: the V1 flag, allowed origins, page
counting (`page_views`, `honour_dnt`) and time zone (`timezone`: an IANA name, null:
the server's) of a workspace; the description, visibility (`private`), floor, ceiling
(null: none), own allowed origins, unique-visitor window (`unique`: seconds, null:
off) and how it tells visitors apart (`unique_by`: "address_agent" or "address") of a
counter. Version 1
(still read) had none of the rules: neither `v1_open` nor `allowed_origins` nor the
bounds. `unique` and `unique_by` came later within version 2: a version 2 counter
without `unique` is still read, and leaves the counter's window as it is; one with
`unique` but without `unique_by` counts by address and User-Agent. So did a workspace's
`page_views` and `honour_dnt` (both or neither) and then its `timezone`: a version 2
workspace line without them is still read, and leaves the workspace's as they are.

Times are unix seconds (floats, exactly as stored); an hour is the UTC hour index (unix
seconds // 3600). A workspace's line comes before its counters. The `end` line tells a
complete file from a cut one. Tokens are never exported (their keyed hashes are useless
without the server's key, and a token should not travel in a file).

CSV version 3 carries the counters' totals and settings only (no history, no workspace
settings): a first row `tally-export-csv,3`, then the header row `CSV_HEADER`, then one
row per counter; an empty floor or ceiling is none, `allowed_origins` is separated by
spaces, an empty `unique` is off. A text cell (workspace, name, description, origins)
that a spreadsheet would take for a formula, one starting with = + - @ a tab or a
carriage return, gets a leading `'` (OWASP's CSV injection advice), and so does one
that starts with `'` itself, so an import takes exactly one `'` off and every name
round-trips (`csv_text`, `csv_untext`). Version 2 (still read) wrote cells as they
were; version 1 (still read) had no floor, ceiling or allowed_origins columns; a
version 2 file without the `unique` column, or without the
`unique_by` column, is read too.

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

from tally import rules
from tally.models import Counter, Workspace
from tally.storage import Store

VERSION = 2
READS = (1, 2)  # the versions an import reads
CSV_VERSION = 3  # 3: text cells neutralised against formulas (csv_text)
CSV_READS = (1, 2, 3)
CSV_MAGIC = ("tally-export-csv", str(CSV_VERSION))
CSV_HEADER_V1 = (
    "workspace",
    "name",
    "description",
    "private",
    "up_count",
    "down_count",
    "created_at",
    "updated_at",
)
CSV_HEADER_V2 = (*CSV_HEADER_V1, "floor", "ceiling", "allowed_origins")  # before `unique`
CSV_HEADER_UNIQUE = (*CSV_HEADER_V2, "unique")  # before `unique_by`
CSV_HEADER = (*CSV_HEADER_UNIQUE, "unique_by")
CSV_TEXT = ("workspace", "name", "description", "allowed_origins")  # cells csv_text guards
# what makes a spreadsheet read a cell as a formula (OWASP, CSV injection), and the
# quote that marks a guarded cell
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")
PAGE = 1000  # counters read (and held) at a time


def csv_text(value: str) -> str:
    """A text cell a spreadsheet shows as text: a leading `'` before one that starts like
    a formula (or with `'`)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def csv_untext(value: str) -> str:
    """The text `csv_text` guarded."""
    return value[1:] if value.startswith("'") else value


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
        "floor": c.floor,
        "ceiling": c.ceiling,
        "allowed_origins": list(c.origins),
        "unique": c.unique_window or None,  # as the management API shows it
        "unique_by": rules.unique_by(c.unique_by_address),
    }


def workspace_line(ws: Workspace) -> dict[str, Any]:
    return {
        "slug": ws.slug,
        "name": ws.name,
        "created_at": ws.created_at,
        "v1_open": ws.v1_open,
        "allowed_origins": list(ws.origins),
        "page_views": ws.page_views,
        "honour_dnt": ws.honour_dnt,
        "timezone": ws.timezone or None,  # as the management API shows it: null, the server's
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
        yield orjson.dumps({"workspace": workspace_line(ws)}) + b"\n"
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
    """The counters' totals and settings of `workspaces` as CSV version 3."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180; a CR in a cell is quoted
    writer.writerow(CSV_MAGIC)
    writer.writerow(CSV_HEADER)
    for ws in workspaces:
        async for page in pages(store, ws):
            for c in page:
                row = _counter(ws, c)
                row["private"] = "true" if c.private else "false"
                row["created_at"], row["updated_at"] = repr(c.created_at), repr(c.updated_at)
                row["floor"] = "" if c.floor is None else str(c.floor)
                row["ceiling"] = "" if c.ceiling is None else str(c.ceiling)
                row["allowed_origins"] = " ".join(c.origins)
                row["unique"] = str(c.unique_window) if c.unique_window else ""
                for key in CSV_TEXT:
                    row[key] = csv_text(row[key])
                writer.writerow([row[k] for k in CSV_HEADER])
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
            if progress is not None:
                progress(len(page))
    yield out.getvalue().encode()
