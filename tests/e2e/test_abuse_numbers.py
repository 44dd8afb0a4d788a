"""Numbers out of range against a real server, on SQLite and on PostgreSQL + Redis: a
signed-in owner sends every route of the website (its route table) every bad number
(beyond 64 bits, negative, zero, not a number) as each id, and as each query number of
the pages: never a 5xx, a 404 for an id, and no traceback in the server's output (an
id beyond 64 bits was SQLite's OverflowError, a 500 with a traceback). The in-process
version, with hypothesis-generated values, is tests/test_site_inputs.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from site_routes import BAD_NUMBERS, FORM, QUERY_NAMES, fill, routes

from .abuse import database
from .server import TallyCli, TallyServer

pytestmark = [pytest.mark.e2e, pytest.mark.abuse]
PASSWORD = "a long passphrase 42"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TallyServer]:
    """A started server (rate limits off) whose account ann@example.com owns "ann" with
    the counter "c"."""
    env = {"TALLY_RATE_LIMIT": "off"}
    url, env = database(request, tmp_path, env)
    cli = TallyCli(url, env=env | {"TALLY_USER_PASSWORD": PASSWORD})
    cli.run("user", "create", "ann@example.com", "--verified")
    cli.counter("ann/c")
    server = TallyServer(tmp_path, database_url=url, args=["--no-bootstrap"], env=env)
    try:
        yield server.start()
    finally:
        server.close()


def csrf(r: httpx.Response) -> str:
    match = CSRF_RE.search(r.text)
    assert match is not None, r.text[:200]
    return match.group(1)


def test_bad_numbers_on_every_site_route(server: TallyServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        token = csrf(client.get("/login"))
        r = client.post(
            "/login", data={"email": "ann@example.com", "password": PASSWORD, "csrf_token": token}
        )
        assert r.status_code == 303
        token = csrf(client.get("/w/ann"))
        failures = []
        for method, template, params in routes():
            for value in BAD_NUMBERS:
                if not value and params:
                    continue  # an empty segment is another path
                path = fill(template, value)
                if method == "GET":
                    r = client.get(path)
                else:
                    r = client.post(path, data={**FORM, "csrf_token": token})
                ids = [p for p in params if p.endswith("_id")]
                if r.status_code >= 500 or (ids and r.status_code != 404):
                    failures.append(f"{method} {template} {value[:30]!r}: {r.status_code}")
            assert len(failures) < 20, "\n".join(failures)  # enough to say what is wrong
        for method, template, params in routes():
            if method != "GET" or template.endswith("/stream") or params:
                continue
            for name in QUERY_NAMES:
                for value in BAD_NUMBERS:
                    r = client.get(fill(template, ""), params={name: value})
                    if r.status_code >= 500:
                        failures.append(f"{template}?{name}={value[:30]!r}: {r.status_code}")
        assert failures == []
        assert client.get("/w/ann").status_code == 200  # still signed in, still serving
    output = server.output()
    assert "Traceback" not in output
    assert "OverflowError" not in output
