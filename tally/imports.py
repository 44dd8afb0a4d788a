"""Import of export files (tally/exports.py describes the format): validate, then write.

The whole file is read and checked first (every line, duplicates, the `end` line's
counts); nothing is written unless all of it is valid. Then it is read again and
written a page of counters per transaction.

What an import does, so that running it twice changes nothing the second time:

- A workspace of the file that is missing is created (with the file's name and time);
  one that exists keeps its name and time. From a version 2 JSON lines file its
  settings (V1 flag, allowed origins; page counting and time zone where the file has
  them) are set to the file's, whether it was created or not; a version 1 file or a
  CSV file has none, and leaves them as they are.
- A counter of the file is set to the file's values: created if missing, otherwise its
  totals, description, private flag and times are replaced by the file's, and, from a
  version 2 file, its floor, ceiling and allowed origins, and its unique-visitor window
  and `unique_by` if the file has a window (a version 2 file written before `unique`
  existed leaves them; one written before `unique_by` existed counts by address and
  User-Agent).
  From a JSON lines file its hourly history is replaced by the file's too (hours the
  file does not have are removed); a CSV file has no history, and leaves it as it is.
- Counters that are not in the file are left alone. Tokens are not part of a file.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tally import periods, rules
from tally.counters import check_name
from tally.errors import TallyError
from tally.exports import (
    CSV_HEADER,
    CSV_HEADER_UNIQUE,
    CSV_HEADER_V1,
    CSV_HEADER_V2,
    CSV_READS,
    CSV_TEXT,
    PAGE,
    READS,
    csv_untext,
)
from tally.models import CounterRecord, CounterRules
from tally.storage import Store

SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_COUNT = 2**63 - 1
MAX_DESCRIPTION = 10_000
MAX_ERRORS = 20  # reported at most; validation stops there


class InvalidFile(ValueError):
    """The file is not a valid export; `errors` says where and why (line: message)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class _Bad(ValueError):
    """One value of a line is wrong (the message says which)."""


@dataclass(frozen=True, slots=True)
class WorkspaceLine:
    slug: str
    name: str
    created_at: float | None = None  # a CSV file has none
    settings: tuple[bool, tuple[str, ...]] | None = None  # (v1_open, origins) of version 2
    # (page_views, honour_dnt), optional in version 2; None: keep the workspace's
    pages: tuple[bool, bool] | None = None
    # its time zone, optional in version 2 ("": the server's); None: keep the workspace's
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class CounterLine:
    workspace: str
    record: CounterRecord


Item = WorkspaceLine | CounterLine


@dataclass
class Report:
    workspaces_created: list[str] = field(default_factory=list)
    workspaces_kept: list[str] = field(default_factory=list)
    workspaces_changed: int = 0  # existing ones whose settings the file changed
    created: int = 0
    changed: int = 0
    unchanged: int = 0
    buckets: int = 0  # in the file

    def lines(self) -> list[str]:
        return [
            f"workspaces: {len(self.workspaces_created)} created, "
            f"{len(self.workspaces_kept)} existing (kept; settings changed in "
            f"{self.workspaces_changed})",
            f"counters: {self.created} created, {self.changed} changed, {self.unchanged} unchanged",
            f"hourly buckets in the file: {self.buckets}",
        ]


# reading ---------------------------------------------------------------------------


def _int(value: Any, what: str, low: int = 0) -> int:
    if type(value) is not int or not low <= value <= MAX_COUNT:
        raise _Bad(f"{what} must be a whole number from {low} to {MAX_COUNT}")
    return value


def _time(value: Any, what: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise _Bad(f"{what} must be unix seconds (a number >= 0)")
    return float(value)


def _str(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise _Bad(f"{what} must be text of at most {limit} characters")
    return value


def _slug(value: Any) -> str:
    if not isinstance(value, str) or not SLUG.fullmatch(value):
        raise _Bad("workspace must be a slug: 1-64 of a-z, 0-9, '-', '_'")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad("name must be text")
    try:
        return check_name("counter", value)
    except TallyError as exc:
        raise _Bad(exc.message) from None


def _bound(value: Any, what: str) -> int | None:
    if value is not None and type(value) is not int:
        raise _Bad(f"{what} must be null or a whole number")
    return value


def _origins(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad("allowed_origins must be a list of origins")
    try:
        return rules.check_origins(value)
    except TallyError as exc:
        raise _Bad(f"allowed_origins: {exc.message}") from None


def _rules(obj: dict[str, Any]) -> CounterRules:
    floor, ceiling = _bound(obj["floor"], "floor"), _bound(obj["ceiling"], "ceiling")
    try:
        rules.check_bounds(floor, ceiling)
    except TallyError as exc:
        raise _Bad(exc.message) from None
    return CounterRules(floor, ceiling, _origins(obj["allowed_origins"]))


def _unique(value: Any) -> int:
    try:
        return rules.check_unique(value)
    except TallyError as exc:
        raise _Bad(exc.message) from None


def _unique_by(value: Any) -> bool:
    try:
        return rules.check_unique_by(value)
    except TallyError as exc:
        raise _Bad(exc.message) from None


def _hours(value: Any) -> tuple[tuple[int, int, int], ...]:
    if not isinstance(value, list):
        raise _Bad("hours must be a list of [hour, up, down]")
    out: list[tuple[int, int, int]] = []
    last = -1
    for item in value:
        if not isinstance(item, list) or len(item) != 3:
            raise _Bad("each of hours must be [hour, up, down]")
        hour = _int(item[0], "an hour")
        if hour <= last:
            raise _Bad("hours must be in increasing order, each hour once")
        out.append((hour, _int(item[1], "an hour's up"), _int(item[2], "an hour's down")))
        last = hour
    return tuple(out)


# the fields of a counter, by format version (a CSV row's are the same without "hours")
COUNTER_KEYS = {1: frozenset((*CSV_HEADER_V1, "hours")), 2: frozenset((*CSV_HEADER_V2, "hours"))}
# fields a counter of that version may leave out (then the counter's value is kept)
OPTIONAL_KEYS = {1: frozenset[str](), 2: frozenset(("unique", "unique_by"))}
WORKSPACE_KEYS = {
    1: frozenset(("slug", "name", "created_at")),
    2: frozenset(("slug", "name", "created_at", "v1_open", "allowed_origins")),
}
# fields a workspace of that version may leave out, in groups given together or left out
# together (then the workspace's own are kept)
PAGE_KEYS = frozenset(("page_views", "honour_dnt"))
TIMEZONE_KEYS = frozenset(("timezone",))
OPTIONAL_WORKSPACE_KEYS: dict[int, tuple[frozenset[str], ...]] = {
    1: (),
    2: (PAGE_KEYS, TIMEZONE_KEYS),
}


def _counter(obj: Any, version: int, hours: bool) -> CounterLine:
    keys = COUNTER_KEYS[version] if hours else COUNTER_KEYS[version] - {"hours"}
    optional = OPTIONAL_KEYS[version]
    if not isinstance(obj, dict) or not keys <= set(obj) <= keys | optional:
        also = f" (and optionally {', '.join(sorted(optional))})" if optional else ""
        raise _Bad(f"a counter has exactly the fields {', '.join(sorted(keys))}{also}")
    if not isinstance(obj["private"], bool):
        raise _Bad("private must be true or false")
    record = CounterRecord(
        name=_name(obj["name"]),
        description=_str(obj["description"], "description", MAX_DESCRIPTION),
        private=obj["private"],
        up_count=_int(obj["up_count"], "up_count"),
        down_count=_int(obj["down_count"], "down_count"),
        created_at=_time(obj["created_at"], "created_at"),
        updated_at=_time(obj["updated_at"], "updated_at"),
        hours=_hours(obj["hours"]) if hours else None,
        rules=_rules(obj) if version >= 2 else None,
        unique=_unique(obj["unique"]) if "unique" in obj else None,
        unique_by_address=_unique_by(obj["unique_by"]) if "unique_by" in obj else False,
    )
    return CounterLine(_slug(obj["workspace"]), record)


@dataclass(frozen=True, slots=True)
class Invalid:
    """A line that is not valid; `fatal`: nothing after it can be read."""

    message: str
    fatal: bool = False


Read = Iterator[tuple[int, Item | Invalid | dict[str, Any]]]


def _timezone(value: Any) -> str:
    """A workspace's time zone as the management API takes it: an IANA name, or null
    (or "") for the server's."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Bad("timezone must be an IANA zone name, or null for the server's")
    try:
        return periods.check_zone(value)
    except TallyError as exc:
        raise _Bad(f"timezone: {exc.message}") from None


def _workspace(body: Any, version: int) -> WorkspaceLine:
    keys, groups = WORKSPACE_KEYS[version], OPTIONAL_WORKSPACE_KEYS[version]
    given = set(body) - keys if isinstance(body, dict) else set()
    if (
        not isinstance(body, dict)
        or not keys <= set(body)
        or given != set().union(*(group for group in groups if group & given))
    ):
        optional = sorted(set().union(*groups))
        also = f" (and optionally {', '.join(optional)})" if optional else ""
        raise _Bad(f"a workspace has exactly the fields {', '.join(sorted(keys))}{also}")
    slug, name = _slug(body["slug"]), _str(body["name"], "name", 200)
    settings = pages = timezone = None
    if version >= 2:
        for key in ("v1_open", *sorted(given & PAGE_KEYS)):
            if not isinstance(body[key], bool):
                raise _Bad(f"{key} must be true or false")
        settings = (body["v1_open"], _origins(body["allowed_origins"]))
        if given >= PAGE_KEYS:
            pages = (body["page_views"], body["honour_dnt"])
        if "timezone" in given:
            timezone = _timezone(body["timezone"])
    created = _time(body["created_at"], "created_at")
    return WorkspaceLine(slug, name, created, settings, pages, timezone)


def _line(raw: bytes, version: int) -> Item | dict[str, Any]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _Bad("not JSON") from None
    if not isinstance(obj, dict) or len(obj) != 1:
        raise _Bad("expected one of workspace, counter, end")
    ((kind, body),) = obj.items()
    if kind == "counter":
        return _counter(body, version, hours=True)
    if kind == "workspace":
        return _workspace(body, version)
    if kind == "end":
        if not isinstance(body, dict):
            raise _Bad("end must be an object")
        return body
    raise _Bad(f"unknown line kind {str(kind)[:32]!r}")


def _jsonl(lines: Iterator[bytes], version: int) -> Read:
    for number, raw in enumerate(lines, start=2):
        if not raw.strip():
            continue
        try:
            item: Item | Invalid | dict[str, Any] = _line(raw, version)
        except _Bad as exc:
            item = Invalid(str(exc))
        yield number, item


def _csv_row(row: list[str], header: tuple[str, ...], guarded: bool) -> CounterLine:
    if len(row) != len(header):
        raise _Bad(f"expected {len(header)} fields, found {len(row)}")
    obj: dict[str, Any] = dict(zip(header, row, strict=True))
    if guarded:  # version 3: text cells as csv_text wrote them
        for key in CSV_TEXT:
            obj[key] = csv_untext(obj[key])
    if obj["private"] not in ("true", "false"):
        raise _Bad("private must be true or false")
    obj["private"] = obj["private"] == "true"
    for key in ("up_count", "down_count"):
        if not (obj[key].isascii() and obj[key].isdigit()):
            raise _Bad(f"{key} must be a whole number")
        obj[key] = int(obj[key])
    for key in ("created_at", "updated_at"):
        try:
            obj[key] = float(obj[key])
        except ValueError:
            raise _Bad(f"{key} must be unix seconds") from None
    version = 1 if header == CSV_HEADER_V1 else 2
    if "unique" in obj:
        text = obj["unique"]
        if text and not (text.isascii() and text.isdigit()):
            raise _Bad("unique must be empty (off) or a window in seconds")
        obj["unique"] = int(text) if text else None
    if obj.get("unique_by") == "":
        del obj["unique_by"]  # by address and User-Agent
    if version >= 2:
        for key in ("floor", "ceiling"):
            text = obj[key]
            if text and not (text.isascii() and text.lstrip("-").isdigit()):
                raise _Bad(f"{key} must be empty or a whole number")
            obj[key] = int(text) if text else None
        obj["allowed_origins"] = obj["allowed_origins"].split()
    return _counter(obj, version, hours=False)


def _csv(lines: Iterator[str], version: int) -> Read:
    reader = csv.reader(lines)
    header = next(reader, None)
    headers = (CSV_HEADER, CSV_HEADER_UNIQUE, CSV_HEADER_V2) if version >= 2 else (CSV_HEADER_V1,)
    if header is None or tuple(header) not in headers:
        yield 2, Invalid(f"the header row must be {','.join(headers[0])}", fatal=True)
        return
    expected = tuple(header)
    declared: set[str] = set()
    for row in reader:
        number = reader.line_num
        try:
            line = _csv_row(row, expected, guarded=version >= 3)
        except _Bad as exc:
            yield number, Invalid(str(exc))
            continue
        if line.workspace not in declared:  # a CSV names workspaces only in its rows
            declared.add(line.workspace)
            yield number, WorkspaceLine(line.workspace, line.workspace)
        yield number, line


def is_jsonl(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(1) == b"{"


def read_items(path: Path) -> Read:
    """The file's items in order, whichever format, with an Invalid for each bad line."""
    if is_jsonl(path):
        with path.open("rb") as f:
            try:
                head = orjson.loads(f.readline())
            except orjson.JSONDecodeError:
                yield 1, Invalid("not JSON", fatal=True)
                return
            if not isinstance(head, dict) or "tally_export" not in head:
                yield 1, Invalid('not a Tally export: no "tally_export" field', fatal=True)
            elif type(head["tally_export"]) is not int or head["tally_export"] not in READS:
                version = str(head["tally_export"])[:16]
                reads = " and ".join(map(str, READS))
                yield 1, Invalid(f"format version {version}: this Tally reads {reads}", fatal=True)
            else:
                yield from _jsonl(f, head["tally_export"])
        return
    with path.open(encoding="utf-8", newline="") as text:
        magic = next(csv.reader([text.readline()]), [])
        csv_versions: dict[tuple[str, ...], int] = {
            ("tally-export-csv", str(v)): v for v in CSV_READS
        }
        if tuple(magic) not in csv_versions:
            yield 1, Invalid("not a Tally export (JSON lines, or CSV version 1 to 3)", fatal=True)
            return
        yield from _csv(text, csv_versions[tuple(magic)])


# validating ------------------------------------------------------------------------


@dataclass
class Summary:
    """What a valid file holds."""

    workspaces: list[WorkspaceLine]
    counters: int
    buckets: int


def validate(path: Path) -> Summary:
    """Read the whole file; InvalidFile with every problem found (up to MAX_ERRORS)."""
    errors: list[str] = []
    workspaces: dict[str, WorkspaceLine] = {}
    seen: set[int] = set()  # hashes of (workspace, name): bounded, ~70 bytes a counter
    counters = buckets = 0
    end: dict[str, Any] | None = None
    try:
        for number, item in read_items(path):
            if isinstance(item, Invalid):
                errors.append(f"line {number}: {item.message}")
                if item.fatal:
                    break
            elif end is not None:
                errors.append(f"line {number}: nothing may follow the end line")
            elif isinstance(item, WorkspaceLine):
                if item.slug in workspaces:
                    errors.append(f"line {number}: workspace {item.slug!r} appears twice")
                workspaces[item.slug] = item
            elif isinstance(item, CounterLine):
                name = f"{item.workspace}/{item.record.name}"
                if item.workspace not in workspaces:
                    errors.append(f"line {number}: workspace {item.workspace!r} is not above")
                key = hash((item.workspace, item.record.name))
                if key in seen:
                    errors.append(f"line {number}: counter {name} appears twice")
                seen.add(key)
                counters += 1
                buckets += len(item.record.hours or ())
            else:
                end = item
            if len(errors) >= MAX_ERRORS:
                break
    except UnicodeDecodeError:
        errors.append("the file is not UTF-8")
    if not errors and is_jsonl(path):
        expected = {"workspaces": len(workspaces), "counters": counters, "buckets": buckets}
        if end is None:
            errors.append("the end line is missing: the file is cut short")
        elif end != expected:
            errors.append(f"the end line says {end}, the file holds {expected}")
    if errors:
        raise InvalidFile(errors)
    return Summary(list(workspaces.values()), counters, buckets)


# writing -----------------------------------------------------------------------------


async def import_file(
    store: Store, path: Path, summary: Summary, progress: Callable[[int], None] | None = None
) -> Report:
    """Write a file that `validate` accepted (see the module's docstring)."""
    report = Report(buckets=summary.buckets)
    ids: dict[str, int] = {}
    for line in summary.workspaces:
        ws = await store.get_workspace(line.slug)
        if ws is None:
            v1_open, allowed = line.settings or (False, ())
            ws = await store.create_workspace(
                line.slug, line.name, line.created_at, v1_open=v1_open, origins=allowed
            )
            report.workspaces_created.append(line.slug)
            if line.pages is not None and any(line.pages):
                await store.set_page_counting(
                    ws.id, page_views=line.pages[0], honour_dnt=line.pages[1]
                )
            if line.timezone:
                await store.set_workspace_timezone(ws.id, line.timezone)
        else:
            report.workspaces_kept.append(line.slug)
            rules_differ = line.settings is not None and line.settings != (ws.v1_open, ws.origins)
            pages_differ = line.pages is not None and line.pages != (ws.page_views, ws.honour_dnt)
            zone_differs = line.timezone is not None and line.timezone != ws.timezone
            if rules_differ or pages_differ or zone_differs:
                report.workspaces_changed += 1
            if zone_differs and line.timezone is not None:
                await store.set_workspace_timezone(ws.id, line.timezone)
            if rules_differ and line.settings is not None:
                v1_open, allowed = line.settings
                await store.set_workspace_rules(ws.id, v1_open=v1_open, origins=allowed)
            if pages_differ and line.pages is not None:
                await store.set_page_counting(
                    ws.id, page_views=line.pages[0], honour_dnt=line.pages[1]
                )
        ids[line.slug] = ws.id
    page: list[CounterRecord] = []
    page_ws = ""

    async def flush() -> None:
        for outcome in await store.import_counters(ids[page_ws], page):
            setattr(report, outcome, getattr(report, outcome) + 1)
        if progress is not None:
            progress(len(page))
        page.clear()

    for _, item in read_items(path):
        if not isinstance(item, CounterLine):
            continue
        if page and (item.workspace != page_ws or len(page) >= PAGE):
            await flush()
        page_ws = item.workspace
        page.append(item.record)
    if page:
        await flush()
    return report
