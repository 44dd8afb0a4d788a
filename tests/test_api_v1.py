"""The V1 legacy endpoints: namespaces opened for V1, V1's bodies and errors, up / down
(never below 0) / set / list, V1's own rate limit, on both backends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import Harness, HarnessFactory

from tally.config import RateLimit
from tally.models import BatchChanges, CounterChange, CounterDelta, Permission
from tally.storage import store_from_url

COUNTER_KEYS = {"id", "name", "count", "created_at", "updated_at", "namespace_id", "namespace"}
NAMESPACE_KEYS = {"id", "name", "created_at", "updated_at"}


async def open_namespace(h: Harness, slug: str = "site.example", *, v1: bool = True) -> int:
    ws = await h.workspace(slug)
    await h.store.set_workspace_rules(ws.id, v1_open=v1, origins=())
    return ws.id


def assert_v1_error(body: Any, code: int, message: str | None = None) -> None:
    """A V1 error: exactly {"code": <int>, "message": <sentence>}."""
    assert set(body) == {"code", "message"}, body
    assert body["code"] == code
    assert type(body["code"]) is int
    assert isinstance(body["message"], str)
    assert body["message"]
    if message is not None:
        assert body["message"] == message


def assert_v1_counter(body: Any, name: str, count: int, namespace: str) -> None:
    assert set(body) == COUNTER_KEYS, body
    assert set(body["namespace"]) == NAMESPACE_KEYS
    assert (body["name"], body["count"], body["namespace"]["name"]) == (name, count, namespace)
    assert body["namespace_id"] == body["namespace"]["id"]
    for stamp in (body["created_at"], body["updated_at"], body["namespace"]["created_at"]):
        assert datetime.fromisoformat(stamp).utcoffset() is not None  # with its offset


async def test_up_creates_and_counts_with_the_v1_body(harness: Harness) -> None:
    """up creates a missing counter in an open namespace and answers V1's counter object
    (no envelope); get reads it; V2 sees the same counter."""
    ws_id = await open_namespace(harness)
    r = await harness.get("/v1/site.example/visits/up")
    assert r.status_code == 200, r.text
    assert_v1_counter(r.json(), "visits", 1, "site.example")
    assert r.json()["namespace_id"] == ws_id
    await harness.get("/v1/site.example/visits/up")
    r = await harness.get("/v1/site.example/visits/")
    assert_v1_counter(r.json(), "visits", 2, "site.example")
    assert (await harness.get("/v1/site.example/visits")).json()["count"] == 2
    v2 = (await harness.get("/v2/site.example/visits")).json()["data"]
    assert (v2["up_count"], v2["id"]) == (2, r.json()["id"])


async def test_a_missing_counter_is_400_record_not_found(harness: Harness) -> None:
    """get and list of a missing counter: 400 {"code":400,"message":"record not found"};
    nothing is created."""
    await open_namespace(harness)
    for path in ("/v1/site.example/nothing/", "/v1/site.example/nothing/list"):
        r = await harness.get(path)
        assert r.status_code == 400
        assert_v1_error(r.json(), 400, "record not found")
    assert await harness.store.read_counter("site.example", "nothing") is None


@pytest.mark.parametrize("action", ["", "/up", "/down", "/set?count=3", "/list"])
async def test_a_namespace_not_open_for_v1_is_404(harness: Harness, action: str) -> None:
    """A workspace not opened for V1 (the default), or none, is a V1 404; nothing changes."""
    ws_id = await open_namespace(harness, "closed", v1=False)
    await harness.store.create_counter(ws_id, "c")
    for path in (f"/v1/closed/c{action}", f"/v1/closed/new{action}", f"/v1/nowhere/c{action}"):
        r = await harness.get(path)
        assert r.status_code == 404, r.text
        assert_v1_error(r.json(), 404)
    counter = await harness.store.read_counter("closed", "c")
    assert counter is not None
    assert counter.up_count == 0
    assert await harness.store.read_counter("closed", "new") is None


async def test_private_counters_are_invisible_to_v1(harness: Harness) -> None:
    """V1 has no tokens: a private counter is "record not found" and is never counted."""
    ws_id = await open_namespace(harness)
    await harness.store.create_counter(ws_id, "secret", private=True)
    for action in ("", "/up", "/down", "/set?count=5", "/list"):
        r = await harness.get(f"/v1/site.example/secret{action}")
        assert r.status_code == 400, (action, r.text)
        assert_v1_error(r.json(), 400, "record not found")
    counter = await harness.store.read_counter("site.example", "secret")
    assert counter is not None
    assert (counter.up_count, counter.down_count) == (0, 0)


async def test_down_floors_at_zero(harness: Harness) -> None:
    """down never takes count below 0: at 0 it answers the counter unchanged."""
    await open_namespace(harness)
    r = await harness.get("/v1/site.example/c/down")  # creates it, at 0
    assert r.status_code == 200
    assert r.json()["count"] == 0
    await harness.get("/v1/site.example/c/up")
    assert (await harness.get("/v1/site.example/c/down")).json()["count"] == 0
    assert (await harness.get("/v1/site.example/c/down")).json()["count"] == 0
    counter = await harness.store.read_counter("site.example", "c")
    assert counter is not None
    assert (counter.up_count, counter.down_count) == (1, 1)


@pytest.mark.parametrize("node_count", [1, 2])
async def test_concurrent_downs_stop_exactly_at_zero(
    make_harness: HarnessFactory, node_count: int
) -> None:
    """25 concurrent downs of a count of 10, over one or two nodes: exactly 10 count,
    none answers below 0, and the count ends at 0."""
    nodes = [await make_harness() for _ in range(node_count)]
    await open_namespace(nodes[0])
    admin_ws = await nodes[0].store.get_workspace("site.example")
    assert admin_ws is not None
    admin = await nodes[0].token(admin_ws, Permission.ADMIN)
    await nodes[0].get("/v2/site.example/c/up?by=10", admin)

    async def down(i: int) -> int:
        r = await nodes[i % node_count].get("/v1/site.example/c/down")
        assert r.status_code == 200, r.text
        return int(r.json()["count"])

    answers = await asyncio.gather(*(down(i) for i in range(25)))
    assert min(answers) == 0
    assert sorted(set(answers)) == list(range(10))  # 9..0 once each, then 0 (refused)
    counter = await nodes[0].store.read_counter("site.example", "c")
    assert counter is not None
    assert (counter.up_count, counter.down_count) == (10, 10)


async def test_set_count(harness: Harness) -> None:
    """set?count=N makes count N (up_count N, down_count 0), creating the counter."""
    await open_namespace(harness)
    r = await harness.get("/v1/site.example/c/set?count=42")
    assert r.status_code == 200, r.text
    assert_v1_counter(r.json(), "c", 42, "site.example")
    await harness.get("/v1/site.example/c/up")
    r = await harness.get("/v1/site.example/c/set?count=7")
    assert r.json()["count"] == 7
    counter = await harness.store.read_counter("site.example", "c")
    assert counter is not None
    assert (counter.up_count, counter.down_count) == (7, 0)


@pytest.mark.parametrize("action", ["up", "down", "set?count=3"])
@pytest.mark.parametrize("name", ["%20", "%20visits", "visits%20", "%E2%80%8B"])
async def test_a_blank_or_space_edged_name_is_a_v1_400(
    harness: Harness, action: str, name: str
) -> None:
    """V1 creates on up / down / set, so it refuses the names V2 refuses: blank, or a
    space at either end; nothing is made."""
    ws_id = await open_namespace(harness)
    r = await harness.get(f"/v1/site.example/{name}/{action}")
    assert r.status_code == 400, r.text
    assert_v1_error(r.json(), 400)
    assert await harness.store.list_counters(ws_id) == []


@pytest.mark.parametrize(
    "query", ["", "count=", "count=-1", "count=x", "count=1&count=2", "count=9007199254740992"]
)
async def test_bad_set_is_a_v1_400(harness: Harness, query: str) -> None:
    await open_namespace(harness)
    await harness.get("/v1/site.example/c/up")
    r = await harness.get(f"/v1/site.example/c/set?{query}")
    assert r.status_code == 400
    assert_v1_error(r.json(), 400)
    assert (await harness.get("/v1/site.example/c")).json()["count"] == 1


@pytest.mark.parametrize(
    "query",
    ["group_by=minute", "group_by=", "group_by=day&group_by=day", "order_by=up", "order_by="],
)
async def test_bad_list_query_is_a_v1_400(harness: Harness, query: str) -> None:
    await open_namespace(harness)
    await harness.get("/v1/site.example/c/up")
    r = await harness.get(f"/v1/site.example/c/list?{query}")
    assert r.status_code == 400
    assert_v1_error(r.json(), 400)


async def seed_history(h: Harness, counter_id: int, hours: dict[int, int]) -> None:
    """Write hourly buckets (utc hour -> ups) as another node would."""
    importer = store_from_url(h.app.settings.database_url, node="importer")
    await importer.open()
    try:
        changes = BatchChanges(
            1,
            {counter_id: CounterDelta(sum(hours.values()), 0, False, 0.0)},
            {(counter_id, hour): [n, 0] for hour, n in hours.items()},
        )
        await importer.apply(changes)
    finally:
        await importer.close()


def hour_of(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) // 3600


async def test_list_groups_the_history(make_harness: HarnessFactory) -> None:
    """list sums the events of each hour, day, week (from Monday), month or year, in the
    configured time zone, with the period's start and its offset; asc or desc."""
    h = await make_harness(timezone=ZoneInfo("Asia/Shanghai"))  # +08:00, no DST
    ws_id = await open_namespace(h)
    c = await h.store.create_counter(ws_id, "c")
    # 2023-03-06 (a Monday) 16:00 UTC = 2023-03-07 00:00 +08:00
    monday = int(datetime(2023, 3, 6, 16, tzinfo=UTC).timestamp()) // 3600
    await seed_history(h, c.id, {monday: 2, monday + 1: 3, monday + 24: 1, monday + 24 * 30: 4})
    r = await h.get("/v1/site.example/c/list?group_by=day&order_by=asc")
    assert r.status_code == 200, r.text
    assert r.json() == [
        {"count": 5, "date": "2023-03-07T00:00:00+08:00"},
        {"count": 1, "date": "2023-03-08T00:00:00+08:00"},
        {"count": 4, "date": "2023-04-06T00:00:00+08:00"},
    ]
    r = await h.get("/v1/site.example/c/list?group_by=hour&order_by=desc")
    assert [e["count"] for e in r.json()] == [4, 1, 3, 2]
    assert r.json()[-1]["date"] == "2023-03-07T00:00:00+08:00"
    r = await h.get("/v1/site.example/c/list?group_by=week")
    assert r.json() == [
        {"count": 6, "date": "2023-03-06T00:00:00+08:00"},
        {"count": 4, "date": "2023-04-03T00:00:00+08:00"},
    ]
    r = await h.get("/v1/site.example/c/list?group_by=month&order_by=desc")
    assert r.json() == [
        {"count": 4, "date": "2023-04-01T00:00:00+08:00"},
        {"count": 6, "date": "2023-03-01T00:00:00+08:00"},
    ]
    r = await h.get("/v1/site.example/c/list?group_by=year")
    assert r.json() == [{"count": 10, "date": "2023-01-01T00:00:00+08:00"}]
    # the default is by day, ascending; new events show at once
    await h.get("/v1/site.example/c/up")
    listed = (await h.get("/v1/site.example/c/list")).json()
    assert len(listed) == 4
    assert listed[-1]["count"] == 1
    assert hour_of(listed[0]["date"]) == monday


async def test_v1_has_its_own_rate_limit(make_harness: HarnessFactory) -> None:
    """30 per minute per path and client IP by default: the 31st is a 429 whose code is
    the string "429", with the rate-limit headers; another path has its own budget."""
    h = await make_harness(rate_limit=RateLimit(1000, 60.0))
    await open_namespace(h)
    for i in range(30):
        r = await h.get("/v1/site.example/c/up")
        assert r.status_code == 200, (i, r.text)
        assert r.headers["x-ratelimit-limit"] == "30"
    r = await h.get("/v1/site.example/c/up")
    assert r.status_code == 429
    assert r.json()["code"] == "429"
    assert set(r.json()) == {"code", "message"}
    assert int(r.headers["retry-after"]) >= 1
    assert (await h.get("/v1/site.example/c")).status_code == 200
    assert (await h.get("/v1/site.example/c")).json()["count"] == 30
    assert (await h.get("/v2/site.example/c")).headers["x-ratelimit-limit"] == "1000"


async def test_v1_honours_bounds_and_allowed_origins(harness: Harness) -> None:
    """A V1 up past a ceiling is a V1 409; an anonymous V1 count from a site not allowed
    is a V1 403; both count nothing."""
    ws_id = await open_namespace(harness)
    c = await harness.store.create_counter(ws_id, "c")
    await harness.store.change_counter(
        c.id, CounterChange(bounds=(None, 1), origins=("https://a.example",))
    )
    ok = {"Origin": "https://a.example"}
    assert (await harness.client.get("/v1/site.example/c/up", headers=ok)).status_code == 200
    r = await harness.client.get("/v1/site.example/c/up", headers=ok)
    assert r.status_code == 409
    assert_v1_error(r.json(), 409)
    r = await harness.client.get("/v1/site.example/c/down", headers={"Origin": "https://b.example"})
    assert r.status_code == 403
    assert_v1_error(r.json(), 403)
    assert (await harness.get("/v1/site.example/c")).json()["count"] == 1


async def test_v1_methods_and_routes(harness: Harness) -> None:
    """Only GET (and a preflight): 405 in V1's shape; unknown V1 routes are 404."""
    await open_namespace(harness)
    r = await harness.client.post("/v1/site.example/c/up")
    assert r.status_code == 405
    assert_v1_error(r.json(), 405)
    assert r.headers["allow"] == "GET, OPTIONS"
    assert (await harness.client.options("/v1/site.example/c/up")).status_code == 204
    for path in ("/v1/site.example", "/v1/site.example/c/reset", "/v1/site.example/c/up/x"):
        r = await harness.get(path)
        assert r.status_code == 404
        assert_v1_error(r.json(), 404)
    r = await harness.get("/v1/site.example/%2F/up")
    assert r.status_code == 400
    assert_v1_error(r.json(), 400)
