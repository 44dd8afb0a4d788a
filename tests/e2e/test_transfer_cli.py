"""`tally export` and `tally import` as a user runs them, SQLite to PostgreSQL and back."""

from __future__ import annotations

from pathlib import Path

import pytest

from .server import TallyCli, sqlite_url

pytestmark = pytest.mark.e2e


def _counters(cli: TallyCli, slug: str) -> list[list[str]]:
    """The `counter list` rows without the update time (column 5)."""
    rows = [line.split("\t") for line in cli.run("counter", "list", slug).stdout.splitlines()]
    return [row[1:5] + row[6:] for row in rows]


@pytest.mark.postgres
def test_export_import_round_trip(tmp_path: Path, postgres_url: str) -> None:
    """export -> import into PostgreSQL -> export -> import into SQLite: same counters;
    a second import reports every counter unchanged; progress goes to stderr."""
    first = TallyCli(sqlite_url(tmp_path / "first.db"))
    first.workspace("demo")
    first.counter("demo/hits")
    first.counter("demo/secret", private=True)
    dump = tmp_path / "demo.jsonl"
    out = first.run("export", "--output", str(dump))
    assert "exported 2 counters" in out.stderr
    assert dump.read_bytes().startswith(b'{"tally_export":2,')

    pg = TallyCli(postgres_url)
    proc = pg.run("import", str(dump))
    assert "valid, 1 workspaces, 2 counters, 0 hourly buckets" in proc.stderr
    assert "counters: 2 created, 0 changed, 0 unchanged" in proc.stdout
    again = pg.run("import", str(dump))
    assert "counters: 0 created, 0 changed, 2 unchanged" in again.stdout

    back = tmp_path / "back.jsonl"
    pg.run("export", "--workspace", "demo", "-o", str(back))
    last = TallyCli(sqlite_url(tmp_path / "last.db"))
    last.run("import", str(back))
    assert _counters(last, "demo") == _counters(first, "demo")
    assert back.read_bytes().splitlines()[1:] == dump.read_bytes().splitlines()[1:]


def test_invalid_file_writes_nothing(tmp_path: Path) -> None:
    """A bad file is refused with the line and reason, exit status 1, nothing written."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tally_export":1}\n{"counter":{}}\n')
    cli = TallyCli(sqlite_url(tmp_path / "t.db"))
    proc = cli.run("import", str(bad), check=False)
    assert proc.returncode == 1
    assert "nothing was written" in proc.stderr
    assert "line 2: a counter has exactly the fields" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert cli.run("workspace", "list").stdout == ""


def test_csv_export(tmp_path: Path) -> None:
    """--format csv writes the versioned totals file to stdout."""
    cli = TallyCli(sqlite_url(tmp_path / "t.db"))
    cli.workspace("demo")
    cli.counter("demo/hits")
    lines = cli.run("export", "--format", "csv").stdout.splitlines()
    assert lines[:2] == [
        "tally-export-csv,3",
        "workspace,name,description,private,up_count,down_count,created_at,updated_at,"
        "floor,ceiling,allowed_origins,unique,unique_by",
    ]
    assert lines[2].startswith("demo,hits,,false,0,0,")
    assert lines[2].endswith(",,,,address_agent")  # no bounds, any origin, unique off
