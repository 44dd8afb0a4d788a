"""The V2 JSON API in-process: envelopes, stats, errors, CORS and read freshness."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from conftest import Harness, HarnessFactory
from helpers import assert_error, bearer

from tally.models import BatchChanges, CounterDelta, Permission, Workspace
from tally.storage import store_from_url

ACTIONS = ("", "/up", "/down", "/reset", "/stats")
WRITE_METHODS = ("POST", "PUT", "DELETE", "PATCH")
RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")

# Every field the contract's success envelope carries, with its JSON type.
COUNTER_FIELDS: dict[str, type] = {
    "id": int,
    "name": str,
    "slug": str,
    "description": str,
    "team_id": int,
    "user_id": int,
    "workspace_id": int,
    "workspace_slug": str,
    "up_count": int,
    "down_count": int,
    "created_at": str,
    "updated_at": str,
}
HOUR_KEYS = [f"{hour:02d}" for hour in range(24)]
WEEKDAY_KEYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
QUARTER_KEYS = ["q1", "q2", "q3", "q4"]


def parse_time(text: str) -> float:
    """Unix seconds of an RFC 3339 UTC timestamp such as 2025-06-17T11:33:23Z."""
    assert RFC3339_UTC.fullmatch(text), text
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def assert_counter_data(data: dict[str, Any], up: int, down: int) -> None:
    """`data` has every contract field with its JSON type, the counts and value = up - down."""
    for field, kind in COUNTER_FIELDS.items():
        assert field in data, field
        assert type(data[field]) is kind, (field, data[field])
    for field in ("created_at", "updated_at"):
        parse_time(data[field])
    assert (data["up_count"], data["down_count"]) == (up, down)
    assert type(data["value"]) is int
    assert data["value"] == up - down


def assert_pairs(section: dict[str, Any], keys: list[str]) -> None:
    """`section` has exactly `keys`, each an {"up": int, "down": int} pair."""
    assert list(section) == keys
    for pair in section.values():
        assert set(pair) == {"up", "down"}
        assert type(pair["up"]) is int
        assert type(pair["down"]) is int


async def hit(h: Harness, path: str, times: int, token: str | None = None) -> httpx.Response:
    """GET `path` `times` times in a row, each answered 200; the last response."""
    r: httpx.Response | None = None
    for _ in range(times):
        r = await h.get(path, token)
        assert r.status_code == 200, r.text
    assert r is not None
    return r


async def committed(h: Harness, name: str, workspace: str = "ws") -> tuple[int, int] | None:
    """The counter's committed (up, down) in the store, None if it does not exist."""
    counter = await h.store.read_counter(workspace, name)
    return None if counter is None else (counter.up_count, counter.down_count)


async def counter_names(h: Harness, workspace: Workspace) -> list[str]:
    """The names of every counter of the workspace in the store."""
    return [c.name for c in await h.store.list_counters(workspace.id)]


@pytest.fixture
async def ws(harness: Harness) -> Workspace:
    """The workspace "ws" of the default harness."""
    return await harness.workspace()


@pytest.fixture
async def writer(harness: Harness, ws: Workspace) -> str:
    """A Write token of "ws"."""
    return await harness.token(ws, Permission.WRITE)


# 1. endpoints and envelopes --------------------------------------------------------------


async def test_get_envelope(harness: Harness, ws: Workspace) -> None:
    """A get answers exactly {"code": "200", "data": {...}} with every contract field typed."""
    counter = await harness.counter(ws, "hits", description="Page hits")
    r = await harness.get("/v2/ws/hits")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"code", "data"}
    assert body["code"] == "200"
    data = body["data"]
    assert_counter_data(data, 0, 0)
    assert data["id"] == counter.id
    assert data["name"] == "hits"
    assert data["description"] == "Page hits"
    assert data["workspace_id"] == ws.id
    assert data["workspace_slug"] == "ws"
    assert int(counter.created_at) == parse_time(data["created_at"])


@pytest.mark.parametrize("action", ["", "/up", "/down"])
async def test_counter_envelope_of_every_counting_action(
    harness: Harness, ws: Workspace, writer: str, action: str
) -> None:
    """get, up and down all answer the same counter envelope, with the counts after the action."""
    await harness.counter(ws, "hits")
    r = await harness.get(f"/v2/ws/hits{action}", writer)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"code", "data"}
    assert r.json()["code"] == "200"
    assert_counter_data(r.json()["data"], int(action == "/up"), int(action == "/down"))


@pytest.mark.parametrize("action", ACTIONS)
async def test_trailing_slash_is_tolerated(
    harness: Harness, ws: Workspace, writer: str, action: str
) -> None:
    """Every V2 route answers the same with and without a trailing slash."""
    await harness.counter(ws, "hits")
    plain = await harness.get(f"/v2/ws/hits{action}", writer)
    slashed = await harness.get(f"/v2/ws/hits{action}/", writer)
    assert plain.status_code == slashed.status_code == 200, slashed.text
    assert set(plain.json()) == set(slashed.json())
    assert plain.json()["data"]["id"] == slashed.json()["data"]["id"]


async def test_up_and_down_are_separate_running_totals(harness: Harness, ws: Workspace) -> None:
    """up only adds to up_count, down only adds to down_count; value is their difference."""
    await harness.counter(ws, "hits")
    for expected_up in (1, 2, 3):
        r = await harness.get("/v2/ws/hits/up")
        assert_counter_data(r.json()["data"], expected_up, 0)
    for expected_down in (1, 2, 3, 4):
        r = await harness.get("/v2/ws/hits/down")
        assert_counter_data(r.json()["data"], 3, expected_down)
    assert r.json()["data"]["value"] == -1
    r = await harness.get("/v2/ws/hits")
    assert_counter_data(r.json()["data"], 3, 4)


async def test_timestamps_are_rfc3339_utc_and_track_updates(
    harness: Harness, ws: Workspace
) -> None:
    """created_at / updated_at are RFC 3339 UTC with a Z, near now, and updated_at >= created_at."""
    before = int(time.time())
    await harness.counter(ws, "hits")
    data = (await harness.get("/v2/ws/hits/up")).json()["data"]
    after = time.time()
    created, updated = parse_time(data["created_at"]), parse_time(data["updated_at"])
    assert before <= created <= updated <= after


async def test_reset_envelope(harness: Harness, ws: Workspace, writer: str) -> None:
    """reset answers the contract's message and the counter with both counts back to 0."""
    await harness.counter(ws, "hits")
    await hit(harness, "/v2/ws/hits/up", 3)
    await hit(harness, "/v2/ws/hits/down", 2)
    r = await harness.get("/v2/ws/hits/reset", writer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"code", "message", "data"}
    assert body["code"] == "200"
    assert body["message"] == "Counter reset successfully"
    assert_counter_data(body["data"], 0, 0)
    assert_counter_data((await harness.get("/v2/ws/hits")).json()["data"], 0, 0)
    assert await committed(harness, "hits") == (0, 0)


async def test_stats_envelope_and_current_buckets(harness: Harness, ws: Workspace) -> None:
    """stats has every key, and today, this_week and the current UTC hour hold the new events."""
    counter = await harness.counter(ws, "hits")
    start = time.time()
    await hit(harness, "/v2/ws/hits/up", 3)
    await hit(harness, "/v2/ws/hits/down", 2)
    r = await harness.get("/v2/ws/hits/stats")
    if int(start // 3600) != int(time.time() // 3600):
        pytest.skip("the test crossed an hour boundary")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"code", "message", "data"}
    assert body["code"] == "200"
    assert body["message"] == "Counter stats retrieved successfully"
    data = body["data"]
    expected_keys = {"id", "counter_id", "up_count", "down_count", "stats"}
    assert expected_keys | {"created_at", "updated_at"} <= set(data)
    assert data["id"] == data["counter_id"] == counter.id
    assert (data["up_count"], data["down_count"]) == (3, 2)
    parse_time(data["created_at"])
    parse_time(data["updated_at"])

    stats = data["stats"]
    assert set(stats) == {"today", "this_week", "temporal"}
    assert stats["today"] == {"up": 3, "down": 2}
    assert stats["this_week"] == {"up": 3, "down": 2}
    temporal = stats["temporal"]
    assert set(temporal) == {"hours", "weekdays", "quarters"}
    assert_pairs(temporal["hours"], HOUR_KEYS)
    assert_pairs(temporal["weekdays"], WEEKDAY_KEYS)
    assert_pairs(temporal["quarters"], QUARTER_KEYS)

    now = datetime.fromtimestamp(start, UTC)
    hour, weekday = f"{now.hour:02d}", WEEKDAY_KEYS[now.weekday()]
    quarter = f"q{(now.month - 1) // 3 + 1}"
    for section, key in (("hours", hour), ("weekdays", weekday), ("quarters", quarter)):
        for other, pair in temporal[section].items():
            assert pair == ({"up": 3, "down": 2} if other == key else {"up": 0, "down": 0})


async def test_stats_include_old_history_and_stay_fresh(
    harness: Harness, ws: Workspace, writer: str
) -> None:
    """Buckets weeks old count in temporal (cached), and new ups still show at once."""
    counter = await harness.counter(ws, "old")
    now_hour = int(time.time()) // 3600
    old_hours = {(counter.id, now_hour - 24 * d): [d, 1] for d in (20, 40, 400)}
    importer = store_from_url(harness.app.settings.database_url, node="importer")
    await importer.open()
    try:
        changes = BatchChanges(1, {counter.id: CounterDelta(460, 3, False, 0.0)}, old_hours)
        await importer.apply(changes)
    finally:
        await importer.close()

    def total(stats: dict[str, Any], section: str) -> tuple[int, int]:
        pairs = stats["temporal"][section].values()
        return sum(p["up"] for p in pairs), sum(p["down"] for p in pairs)

    for expected_up in (460, 461, 462):  # the second and third use the cached old part
        r = await harness.get("/v2/ws/old/stats")
        stats = r.json()["data"]["stats"]
        for section in ("hours", "weekdays", "quarters"):
            assert total(stats, section) == (expected_up, 3)
        assert stats["today"] == {"up": expected_up - 460, "down": 0}
        await hit(harness, "/v2/ws/old/up", 1, writer)


async def test_stats_use_the_configured_time_zone(make_harness: HarnessFactory) -> None:
    """With timezone set, today and the hour keys follow that zone's clock (here UTC+14)."""
    zone = ZoneInfo("Pacific/Kiritimati")  # UTC+14 all year, so local hours are whole hours
    h = await make_harness(timezone=zone)
    await h.counter(await h.workspace(), "hits")
    start = time.time()
    await hit(h, "/v2/ws/hits/up", 2)
    stats = (await h.get("/v2/ws/hits/stats")).json()["data"]["stats"]
    if int(start // 3600) != int(time.time() // 3600):
        pytest.skip("the test crossed an hour boundary")
    local = datetime.fromtimestamp(start, zone)
    assert stats["today"] == {"up": 2, "down": 0}
    assert stats["temporal"]["hours"][f"{local.hour:02d}"] == {"up": 2, "down": 0}
    assert stats["temporal"]["weekdays"][WEEKDAY_KEYS[local.weekday()]] == {"up": 2, "down": 0}


async def test_stats_of_a_new_counter_are_all_zero(harness: Harness, ws: Workspace) -> None:
    """A counter without events still has every stats key, all zero."""
    await harness.counter(ws, "hits")
    stats = (await harness.get("/v2/ws/hits/stats")).json()["data"]["stats"]
    zero = {"up": 0, "down": 0}
    assert stats["today"] == stats["this_week"] == zero
    assert stats["temporal"] == {
        "hours": dict.fromkeys(HOUR_KEYS, zero),
        "weekdays": dict.fromkeys(WEEKDAY_KEYS, zero),
        "quarters": dict.fromkeys(QUARTER_KEYS, zero),
    }


# 3. errors -------------------------------------------------------------------------------

BAD_PATHS = [
    pytest.param("/v2/ws/a%2Fb", id="slash-in-name"),
    pytest.param("/v2/ws/a%2fb", id="lowercase-escaped-slash"),
    pytest.param("/v2/w%2Fs/hits", id="slash-in-workspace"),
    pytest.param("/v2/ws/" + "x" * 129, id="name-129-chars"),
    pytest.param("/v2/ws/" + "%C3%A9" * 129, id="name-129-multibyte-chars"),
    pytest.param("/v2/" + "w" * 129 + "/hits", id="workspace-129-chars"),
    pytest.param("/v2/ws/a%00b", id="nul"),
    pytest.param("/v2/ws/a%0Ab", id="newline"),
    pytest.param("/v2/ws/a%7Fb", id="del"),
    pytest.param("/v2/ws/a%C2%85b", id="c1-control"),
    pytest.param("/v2/w%0As/hits", id="newline-in-workspace"),
    pytest.param("/v2/ws/%FF", id="invalid-utf8"),
    pytest.param("/v2/ws/a%C3", id="truncated-utf8"),
    pytest.param("/v2/ws/%20", id="one-space"),
    pytest.param("/v2/ws/%20%20%20", id="spaces"),
    pytest.param("/v2/ws/%20hits", id="leading-space"),
    pytest.param("/v2/ws/hits%20", id="trailing-space"),
    pytest.param("/v2/ws/hits%C2%A0", id="trailing-no-break-space"),
    pytest.param("/v2/ws/%E3%80%80hits", id="leading-ideographic-space"),
    pytest.param("/v2/ws/%E2%80%8B", id="zero-width-space-alone"),
    pytest.param("/v2/ws/%E2%80%8B%C2%AD%20%E2%80%8B", id="invisible-only"),
]


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("path", BAD_PATHS)
async def test_bad_name_is_400_and_creates_nothing(
    harness: Harness, ws: Workspace, writer: str, path: str, action: str
) -> None:
    """A bad workspace or counter name is a 400 error for every action, even with a Write token."""
    assert_error(await harness.get(path + action, writer), 400)
    assert await counter_names(harness, ws) == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v2/ws/%20/up", "the counter name must not begin or end with a space"),
        ("/v2/ws/hits%20/set?up_count=3", "the counter name must not begin or end with a space"),
        ("/v2/ws/%E2%80%8B/down", "the counter name must have a visible character"),
    ],
)
async def test_a_blank_name_says_why(
    harness: Harness, ws: Workspace, path: str, message: str
) -> None:
    """The 400 of a blank or space-edged name says what is wrong (with an Admin token,
    which would create the counter)."""
    admin = await harness.token(ws, Permission.ADMIN)
    r = await harness.get(path, admin)
    assert_error(r, 400)
    assert r.json()["message"] == message
    assert await counter_names(harness, ws) == []


@pytest.mark.parametrize(
    ("encoded", "name"),
    [
        pytest.param("x" * 128, "x" * 128, id="128-chars"),
        pytest.param("%C3%A9" * 128, "é" * 128, id="128-multibyte-chars"),
        pytest.param("caf%C3%A9%20au%20lait", "café au lait", id="utf8-and-spaces"),
        pytest.param("a%E2%80%8Bb", "a\u200bb", id="zero-width-space-inside"),
        pytest.param(
            "%F0%9F%91%A9%E2%80%8D%F0%9F%92%BB", "\U0001f469\u200d\U0001f4bb", id="emoji-zwj"
        ),
    ],
)
async def test_fine_names_work(
    harness: Harness, ws: Workspace, writer: str, encoded: str, name: str
) -> None:
    """Names up to 128 characters, with spaces inside or of non-ASCII text are counters
    like any other."""
    r = await harness.get(f"/v2/ws/{encoded}/up", writer)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["name"] == name
    r = await harness.get(f"/v2/ws/{encoded}")
    assert r.status_code == 200, r.text
    assert_counter_data(r.json()["data"], 1, 0)
    assert await counter_names(harness, ws) == [name]


async def test_names_are_case_sensitive(harness: Harness, ws: Workspace, writer: str) -> None:
    """ "A" and "a" are two counters."""
    await hit(harness, "/v2/ws/A/up", 2, writer)
    await hit(harness, "/v2/ws/a/up", 1, writer)
    assert_counter_data((await harness.get("/v2/ws/A")).json()["data"], 2, 0)
    assert_counter_data((await harness.get("/v2/ws/a")).json()["data"], 1, 0)
    assert sorted(await counter_names(harness, ws)) == ["A", "a"]


async def test_workspaces_are_case_sensitive(harness: Harness, ws: Workspace) -> None:
    """A counter of workspace "ws" is not found under "WS"."""
    await harness.counter(ws, "hits")
    assert_error(await harness.get("/v2/WS/hits"), 404)
    assert_error(await harness.get("/v2/WS/hits/up"), 404)


@pytest.mark.parametrize("path", ["/v2", "/v2/", "/v2/ws", "/v2/ws/hits/unknown", "/v2/ws/a/b/up"])
async def test_unknown_route_is_404(harness: Harness, ws: Workspace, path: str) -> None:
    """A path under /v2 that is no V2 route is a 404 error (other paths are the website's,
    tests/test_site_*.py)."""
    await harness.counter(ws, "hits")
    assert_error(await harness.get(path), 404)


@pytest.mark.parametrize("action", ["", "/up", "/down", "/reset", "/stats"])
async def test_missing_counter_is_404(harness: Harness, ws: Workspace, action: str) -> None:
    """Every action on a counter or workspace that does not exist is a 404 error."""
    assert_error(await harness.get(f"/v2/ws/missing{action}"), 404)
    assert_error(await harness.get(f"/v2/nows/missing{action}"), 404)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("method", WRITE_METHODS)
async def test_other_methods_are_405_with_allow(
    harness: Harness, ws: Workspace, writer: str, method: str, action: str
) -> None:
    """POST, PUT, DELETE and PATCH on a V2 route are 405 with an Allow header naming GET."""
    await harness.counter(ws, "hits")
    await hit(harness, "/v2/ws/hits/up", 1)
    r = await harness.client.request(method, f"/v2/ws/hits{action}", headers=bearer(writer))
    assert_error(r, 405)
    assert "GET" in [m.strip() for m in r.headers["allow"].split(",")]
    assert await committed(harness, "hits") == (1, 0)


# (status, method, path, who): one request of each error class on the counter "ws/hits"
BAD_INPUTS = [
    pytest.param(400, "GET", "/v2/ws/hits%00/up", "write", id="400-bad-name"),
    pytest.param(400, "GET", "/v2/ws/" + "h" * 129 + "/up", "write", id="400-long-name"),
    pytest.param(401, "GET", "/v2/ws/hits/up", "bogus", id="401-bad-token"),
    pytest.param(401, "GET", "/v2/ws/hits/reset", None, id="401-anonymous-reset"),
    pytest.param(403, "GET", "/v2/ws/hits/reset", "read", id="403-read-token-reset"),
    pytest.param(404, "GET", "/v2/ws/new/up", None, id="404-anonymous-create"),
    pytest.param(404, "GET", "/v2/ws/hits/up/more", "write", id="404-unknown-route"),
    pytest.param(405, "POST", "/v2/ws/hits/up", "write", id="405-post-up"),
    pytest.param(405, "DELETE", "/v2/ws/hits/reset", "write", id="405-delete-reset"),
]


@pytest.mark.parametrize(("status", "method", "path", "who"), BAD_INPUTS)
async def test_bad_input_changes_nothing(
    harness: Harness, ws: Workspace, status: int, method: str, path: str, who: str | None
) -> None:
    """A request answered 400/401/403/404/405 leaves every count as it was and creates nothing."""
    await harness.counter(ws, "hits")
    await hit(harness, "/v2/ws/hits/up", 2)
    await hit(harness, "/v2/ws/hits/down", 1)
    tokens = {
        "read": await harness.token(ws, Permission.READ),
        "write": await harness.token(ws, Permission.WRITE),
        "bogus": "tly_" + "A" * 43,
    }
    r = await harness.client.request(method, path, headers=bearer(tokens.get(who or "")))
    assert_error(r, status)
    assert await counter_names(harness, ws) == ["hits"]
    assert await committed(harness, "hits") == (2, 1)
    assert_counter_data((await harness.get("/v2/ws/hits")).json()["data"], 2, 1)


# 4. CORS ---------------------------------------------------------------------------------

# (method, path, who, expected status): successes and errors of every kind
CORS_CASES = [
    pytest.param("GET", "/v2/ws/hits", None, 200, id="get"),
    pytest.param("GET", "/v2/ws/hits/up", None, 200, id="up"),
    pytest.param("GET", "/v2/ws/hits/down", None, 200, id="down"),
    pytest.param("GET", "/v2/ws/hits/reset", "write", 200, id="reset"),
    pytest.param("GET", "/v2/ws/hits/stats", None, 200, id="stats"),
    pytest.param("GET", "/v2/ws/a%2Fb", None, 400, id="400"),
    pytest.param("GET", "/v2/ws/hits", "bogus", 401, id="401"),
    pytest.param("GET", "/v2/ws/hits/reset", None, 401, id="401-reset"),
    pytest.param("GET", "/v2/ws/missing", None, 404, id="404-counter"),
    pytest.param("GET", "/v2/ws/hits/nope", None, 404, id="404-route"),
    pytest.param("POST", "/v2/ws/hits/up", None, 405, id="405"),
]


@pytest.mark.parametrize(("method", "path", "who", "status"), CORS_CASES)
async def test_every_v2_response_allows_any_origin(
    harness: Harness,
    ws: Workspace,
    writer: str,
    method: str,
    path: str,
    who: str | None,
    status: int,
) -> None:
    """Every V2 response, success or error, carries Access-Control-Allow-Origin: *."""
    await harness.counter(ws, "hits")
    token = {"write": writer, "bogus": "tly_" + "B" * 43}.get(who or "")
    r = await harness.client.request(
        method, path, headers={"Origin": "https://example.com", **bearer(token)}
    )
    assert r.status_code == status, r.text
    assert r.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("action", ACTIONS)
async def test_preflight_allows_get_and_authorization(
    harness: Harness, ws: Workspace, action: str
) -> None:
    """OPTIONS on a V2 route is a 2xx preflight allowing any origin, GET and Authorization."""
    await harness.counter(ws, "hits")
    r = await harness.client.options(
        f"/v2/ws/hits{action}",
        headers={
            "Origin": "https://example.com",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert 200 <= r.status_code < 300, r.text
    assert r.headers["access-control-allow-origin"] == "*"
    methods = [m.strip().upper() for m in r.headers["access-control-allow-methods"].split(",")]
    assert "GET" in methods
    allowed = [h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")]
    assert "authorization" in allowed
    assert await committed(harness, "hits") == (0, 0)


# 6. freshness ----------------------------------------------------------------------------


async def buffered(make_harness: HarnessFactory) -> tuple[Harness, str]:
    """An app in buffered mode that never flushes during a test, and a Write token of "ws"."""
    h = await make_harness(durability="buffered", flush_interval=3600)
    return h, await h.token(await h.workspace(), Permission.WRITE)


async def test_buffered_up_is_visible_to_an_immediate_get(make_harness: HarnessFactory) -> None:
    """In buffered mode a get includes ups not yet flushed to the store."""
    h, token = await buffered(make_harness)
    r = await hit(h, "/v2/ws/hits/up", 3, token)
    assert_counter_data(r.json()["data"], 3, 0)
    r = await hit(h, "/v2/ws/hits/down", 1, token)
    assert_counter_data(r.json()["data"], 3, 1)
    assert_counter_data((await h.get("/v2/ws/hits")).json()["data"], 3, 1)
    assert await committed(h, "hits") == (0, 0)  # still pending: the read saw the buffer


async def test_buffered_reset_is_visible_to_an_immediate_get(make_harness: HarnessFactory) -> None:
    """In buffered mode a get right after a reset shows 0, and later ups count from 0."""
    h, token = await buffered(make_harness)
    await hit(h, "/v2/ws/hits/up", 3, token)
    r = await h.get("/v2/ws/hits/reset", token)
    assert_counter_data(r.json()["data"], 0, 0)
    assert_counter_data((await h.get("/v2/ws/hits")).json()["data"], 0, 0)
    await hit(h, "/v2/ws/hits/up", 1, token)
    assert_counter_data((await h.get("/v2/ws/hits")).json()["data"], 1, 0)


async def test_buffered_stats_include_pending_hours(make_harness: HarnessFactory) -> None:
    """In buffered mode stats count events not yet flushed, in today and the current hour."""
    h, token = await buffered(make_harness)
    start = time.time()
    await hit(h, "/v2/ws/hits/up", 4, token)
    await hit(h, "/v2/ws/hits/down", 1, token)
    data = (await h.get("/v2/ws/hits/stats")).json()["data"]
    if int(start // 3600) != int(time.time() // 3600):
        pytest.skip("the test crossed an hour boundary")
    assert (data["up_count"], data["down_count"]) == (4, 1)
    assert data["stats"]["today"] == {"up": 4, "down": 1}
    assert data["stats"]["this_week"] == {"up": 4, "down": 1}
    hour = f"{datetime.fromtimestamp(start, UTC).hour:02d}"
    assert data["stats"]["temporal"]["hours"][hour] == {"up": 4, "down": 1}
    assert await committed(h, "hits") == (0, 0)


@pytest.mark.parametrize("precreated", [True, False], ids=["existing", "created-by-the-ups"])
async def test_concurrent_ups_each_get_their_own_count(
    harness: Harness, ws: Workspace, writer: str, precreated: bool
) -> None:
    """In commit mode 50 concurrent ups answer up_count 1..50 once each, and 50 are kept."""
    if precreated:
        await harness.counter(ws, "hits")
    responses = await asyncio.gather(*(harness.get("/v2/ws/hits/up", writer) for _ in range(50)))
    assert [r.status_code for r in responses] == [200] * 50
    assert sorted(r.json()["data"]["up_count"] for r in responses) == list(range(1, 51))
    assert_counter_data((await harness.get("/v2/ws/hits")).json()["data"], 50, 0)
    assert await committed(harness, "hits") == (50, 0)


@pytest.mark.parametrize("durability", ["commit", "buffered"])
async def test_a_counter_deleted_behind_the_nodes_back_is_missing_at_once(
    make_harness: HarnessFactory, durability: str
) -> None:
    """A counter this node has cached, deleted by someone else (another node, the CLI),
    is missing for the very next request, not a 503 to retry: an anonymous up is the
    404 of a missing counter and counts nothing; a Write token's up creates it anew, as
    it would any missing counter, and counts from zero. Other counters are unaffected."""
    h = await make_harness(durability=durability, token_cache_ttl=60.0)
    ws = await h.store.create_workspace("ws", "ws")
    write = await h.token(ws, Permission.WRITE)
    for name in ("gone", "kept"):
        await h.counter(ws, name)
        assert (await h.get(f"/v2/ws/{name}/up")).status_code == 200  # cached
    gone = await h.store.read_counter("ws", "gone")
    assert gone is not None
    assert await h.store.delete_counter(gone.id)
    for _ in range(2):
        assert_error(await h.get("/v2/ws/gone/up"), 404)
    assert (await h.get("/v2/ws/kept/up")).json()["data"]["up_count"] == 2
    again = await h.get("/v2/ws/gone/up", write)
    assert again.status_code == 200, again.text
    assert again.json()["data"]["up_count"] == 1
    assert again.json()["data"]["id"] != gone.id
