"""Import of export files (tally/exports.py describes the format): validate, then write.

The whole file is read and checked first (every line, duplicates, the `end` line's
counts); nothing is written unless all of it is valid. Then it is read again and
written a page of counters per transaction.

What an import does, so that running it twice changes nothing the second time:

- A workspace of the file that is missing is created (with the file's name and time);
  one that exists is kept as it is.
- A counter of the file is set to the file's values: created if missing, otherwise its
  totals, description, private flag and times are replaced by the file's. From a JSON
  lines file its hourly history is replaced by the file's too (hours the file does not
  have are removed); a CSV file has no history, and leaves it as it is.
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

from tally.counters import check_name
from tally.errors import TallyError
from tally.exports import CSV_HEADER, CSV_MAGIC, PAGE, VERSION
from tally.models import CounterRecord
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


@dataclass(frozen=True, slots=True)
class CounterLine:
    workspace: str
    record: CounterRecord


Item = WorkspaceLine | CounterLine


@dataclass
class Report:
    workspaces_created: list[str] = field(default_factory=list)
    workspaces_kept: list[str] = field(default_factory=list)
    created: int = 0
    changed: int = 0
    unchanged: int = 0
    buckets: int = 0  # in the file

    def lines(self) -> list[str]:
        return [
            f"workspaces: {len(self.workspaces_created)} created, "
            f"{len(self.workspaces_kept)} existing (kept)",
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


_COUNTER_KEYS = {*CSV_HEADER, "hours"}


def _counter(obj: Any, hours: bool) -> CounterLine:
    if not isinstance(obj, dict) or set(obj) != (_COUNTER_KEYS if hours else set(CSV_HEADER)):
        raise _Bad(f"a counter has exactly the fields {', '.join(sorted(_COUNTER_KEYS))}")
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
    )
    return CounterLine(_slug(obj["workspace"]), record)


@dataclass(frozen=True, slots=True)
class Invalid:
    """A line that is not valid; `fatal`: nothing after it can be read."""

    message: str
    fatal: bool = False


Read = Iterator[tuple[int, Item | Invalid | dict[str, Any]]]


def _line(raw: bytes) -> Item | dict[str, Any]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _Bad("not JSON") from None
    if not isinstance(obj, dict) or len(obj) != 1:
        raise _Bad("expected one of workspace, counter, end")
    ((kind, body),) = obj.items()
    if kind == "counter":
        return _counter(body, hours=True)
    if kind == "workspace":
        if not isinstance(body, dict) or set(body) != {"slug", "name", "created_at"}:
            raise _Bad("a workspace has exactly the fields slug, name, created_at")
        slug, name = _slug(body["slug"]), _str(body["name"], "name", 200)
        return WorkspaceLine(slug, name, _time(body["created_at"], "created_at"))
    if kind == "end":
        if not isinstance(body, dict):
            raise _Bad("end must be an object")
        return body
    raise _Bad(f"unknown line kind {str(kind)[:32]!r}")


def _jsonl(lines: Iterator[bytes]) -> Read:
    for number, raw in enumerate(lines, start=2):
        if not raw.strip():
            continue
        try:
            item: Item | Invalid | dict[str, Any] = _line(raw)
        except _Bad as exc:
            item = Invalid(str(exc))
        yield number, item


def _csv_row(row: list[str]) -> CounterLine:
    if len(row) != len(CSV_HEADER):
        raise _Bad(f"expected {len(CSV_HEADER)} fields, found {len(row)}")
    obj: dict[str, Any] = dict(zip(CSV_HEADER, row, strict=True))
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
    return _counter(obj, hours=False)


def _csv(lines: Iterator[str]) -> Read:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or tuple(header) != CSV_HEADER:
        yield 2, Invalid(f"the header row must be {','.join(CSV_HEADER)}", fatal=True)
        return
    declared: set[str] = set()
    for row in reader:
        number = reader.line_num
        try:
            line = _csv_row(row)
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
            elif head["tally_export"] != VERSION:
                version = str(head["tally_export"])[:16]
                yield 1, Invalid(f"format version {version}: this Tally reads 1", fatal=True)
            else:
                yield from _jsonl(f)
        return
    with path.open(encoding="utf-8", newline="") as text:
        magic = next(csv.reader([text.readline()]), [])
        if tuple(magic) != CSV_MAGIC:
            yield 1, Invalid("not a Tally export (JSON lines, or CSV version 1)", fatal=True)
            return
        yield from _csv(text)


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
            ws = await store.create_workspace(line.slug, line.name, line.created_at)
            report.workspaces_created.append(line.slug)
        else:
            report.workspaces_kept.append(line.slug)
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
