"""Hostile input against a real server, on SQLite and on PostgreSQL + Redis: percent-encoding
tricks, invalid UTF-8, over-long and SQL-looking names, huge and repeated query
parameters. Each request gets a clear 4xx in the API's JSON shape (or the connection
closed, when granian refuses it first) or a right 200; afterwards exactly the expected
counters exist, with exactly the counts the 200s acknowledged, and the server is healthy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson
import pytest

from tally.counters import MAX_NAME

from .abuse import database
from .server import TallyCli, TallyServer
from .test_request_limits import get, raw

# Names that are odd but valid: each is created by an up, under exactly this name.
ODD_NAMES = [
    "x'; DROP TABLE counters; --",
    "Robert'); DELETE FROM tokens;--",
    "1 OR 1=1",
    '"><img src=x onerror=alert(1)>',
    "%2F",  # sent as %252F: decoded once, never twice
    "ünï cødé 🎉",
    "n" * MAX_NAME,
    "...",
    "-",
]
# Raw path segments (after /v2/ws/) that are no valid counter name: 400.
BAD_SEGMENTS = [
    b"a%2Fb",  # an encoded '/'
    b"%2e%2e",  # '..' encoded
    b"..",
    b".",
    b"a%00b",  # NUL
    b"a%0Ab",  # newline
    b"%FF%FE",  # not UTF-8
    b"%C0%AF",  # overlong UTF-8 for '/'
    b"%ED%A0%80",  # a UTF-8 encoded surrogate
    b"%",  # malformed escapes
    b"a%2",
    b"%zz",
    b"n" * (MAX_NAME + 1),
    b"n" * 10_000,
]
# Raw bytes in the request line that a client should have encoded: granian refuses them
# (a 400 without a body) or Tally does.
RAW_BYTES = [b"\xff\xfe", b"a\x00b", b"a\x7fb", b"a b"]
# Query strings on /v2/ws/c/up that are refused, and changed nothing.
BAD_QUERIES = [
    b"by=" + b"9" * 10_000,
    b"&".join([b"by=1"] * 2_000),  # repeated
    b"by=%FF",
    b"by=-1",
    b"by=1e3",
    b"by=0x10",
    b"by=",
    b"by=1%00",
]
# Query strings that are harmless: the up is counted (unknown parameters are ignored).
HARMLESS_QUERIES = [
    b"&".join(b"p%d=1" % i for i in range(2_000)),
    b"q=" + quote("'; DROP TABLE counters; --").encode(),
]


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def server_and_cli(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TallyServer, TallyCli]]:
    """A started server (rate limit off) and the admin CLI, on each backend."""
    env = {"TALLY_RATE_LIMIT": "off"}
    url, env = database(request, tmp_path, env)
    cli = TallyCli(url, env=env)
    cli.workspace("ws")
    cli.counter("ws/c")
    server = TallyServer(tmp_path, database_url=url, args=["--no-bootstrap"], env=env)
    try:
        yield server.start(), cli
    finally:
        server.close()


def assert_refused(status: int | None, body: bytes, what: object) -> None:
    """A 4xx, in the API's JSON shape when Tally answered; or a closed connection."""
    if status is None or status == 431:
        return
    assert 400 <= status < 500, (what, status, body)
    if status in (400, 401, 403, 404):
        error = orjson.loads(body)
        assert error["code"] == str(status), (what, body)
        assert error["message"], (what, body)


async def test_hostile_paths_and_queries_store_nothing_wrongly(
    server_and_cli: tuple[TallyServer, TallyCli],
) -> None:
    """Odd but valid names are created under exactly that name; bad segments, raw bytes
    and bad queries are 4xx and create or count nothing; harmless queries count once."""
    server, cli = server_and_cli
    admin = cli.token("ws", "admin")
    auth = b"Authorization: Bearer " + admin.encode()
    port = server.port
    for name in ODD_NAMES:
        path = b"/v2/ws/" + quote(name, safe="").encode() + b"/up"
        status, body = await raw(port, get(path, auth))
        assert status == 200, (name, body)
        assert orjson.loads(body)["data"]["name"] == name
    for segment in BAD_SEGMENTS:
        for action in (b"/up", b"", b"/stats"):
            status, body = await raw(port, get(b"/v2/ws/" + segment + action, auth))
            assert status == 400, (segment, action, status, body)
            assert_refused(status, body, segment)
        status, body = await raw(port, get(b"/v2/" + segment + b"/c/up", auth))
        assert status == 400, (segment, body)  # as a workspace name, too
    for junk in RAW_BYTES:
        status, body = await raw(port, get(b"/v2/ws/" + junk + b"/up", auth))
        assert status in (None, 400), (junk, body)  # granian's bare 400, or Tally's
    for query in BAD_QUERIES:
        status, body = await raw(port, get(b"/v2/ws/c/up?" + query, auth))
        assert status == 400, (query[:40], body)
        assert_refused(status, body, query[:40])
    counted = 0
    for query in HARMLESS_QUERIES:
        status, body = await raw(port, get(b"/v2/ws/c/up?" + query, auth))
        assert status == 200, (query[:40], body)
        counted += 1

    async with httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=10) as client:
        headers = {"Authorization": f"Bearer {admin}"}
        listed = await client.get("/v2/ws/-/counters", params={"limit": 200}, headers=headers)
        assert listed.status_code == 200, listed.text
        counters = {c["name"]: c for c in listed.json()["data"]["counters"]}
        assert set(counters) == {"c", *ODD_NAMES}
        assert counters["c"]["up_count"] == counted
        assert counters["c"]["down_count"] == 0
        assert all(counters[name]["up_count"] == 1 for name in ODD_NAMES)
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
