"""The management API (/v2/{workspace}/-/counters, /-/tokens): each endpoint, bad inputs
that change nothing, the permission matrix, paging and the name filter, deletion seen by
every node, and the answers in the documented schemas."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from conftest import Harness, HarnessFactory
from helpers import assert_error, bearer
from test_openapi import check_body

from tally.config import RateLimit
from tally.models import Permission
from tally.web.openapi import document

COUNTERS = "/v2/ws/-/counters"
TOKENS = "/v2/ws/-/tokens"
SETTINGS = "/v2/ws/-/settings"


async def call(
    h: Harness, method: str, path: str, token: str | None = None, body: Any = None, **kw: Any
) -> httpx.Response:
    if body is not None:
        kw["json"] = body
    return await h.client.request(method, path, headers=bearer(token), **kw)


async def setup(h: Harness) -> dict[str, Any]:
    """Workspace ws with a counter and tokens of each permission; workspace other with
    its own Admin token and counter."""
    ws = await h.workspace()
    other = await h.workspace("other")
    counter = await h.counter(ws, "c", description="first")
    theirs = await h.counter(other, "theirs")
    tokens = {p: await h.token(ws, p) for p in Permission}
    other_admin = await h.token(other, Permission.ADMIN)
    other_tokens = await h.store.list_tokens(other.id)
    return {
        "ws": ws,
        "counter": counter,
        "theirs": theirs,
        "admin": tokens[Permission.ADMIN],
        "write": tokens[Permission.WRITE],
        "read": tokens[Permission.READ],
        "other_admin": other_admin,
        "other_token_id": other_tokens[0].id,
    }


async def state(h: Harness, ws_id: int) -> tuple[Any, ...]:
    """What a refused request must leave as it was."""
    page = await h.store.counter_page(ws_id, limit=1000)
    counters = []
    for c in page.counters:
        full = await h.store.get_counter_by_id(c.id)
        assert full is not None
        counters.append((c.id, c.name, c.description, c.private, full.floor, full.ceiling,
                         full.origins))  # fmt: skip
    tokens = [(t.id, t.revoked_at) for t in await h.store.list_tokens(ws_id)]
    ws = await h.store.get_workspace_by_id(ws_id)
    assert ws is not None
    return counters, tokens, (ws.v1_open, ws.origins)


def requests(s: dict[str, Any]) -> list[tuple[str, str, Any]]:
    cid = s["counter"].id
    return [
        ("GET", COUNTERS, None),
        ("POST", COUNTERS, {"name": "new"}),
        ("GET", f"{COUNTERS}/{cid}", None),
        ("PATCH", f"{COUNTERS}/{cid}", {"description": "changed"}),
        ("PATCH", f"{COUNTERS}/{cid}", {"floor": 0, "allowed_origins": ["https://a.example"]}),
        ("DELETE", f"{COUNTERS}/{cid}", None),
        ("GET", TOKENS, None),
        ("POST", TOKENS, {"permission": "read"}),
        ("DELETE", f"{TOKENS}/1", None),
        ("GET", SETTINGS, None),
        ("PATCH", SETTINGS, {"v1_open": True, "allowed_origins": ["https://a.example"]}),
    ]


async def test_permission_matrix(harness: Harness) -> None:
    """No token 401, a bad token 401, Read or Write 403, another workspace's Admin 404,
    a missing workspace 404; none of them changes anything."""
    h = harness
    s = await setup(h)
    before = await state(h, s["ws"].id)
    bad = "tly_" + "A" * 43
    for method, path, body in requests(s):
        assert_error(await call(h, method, path, None, body), 401)
        assert_error(await call(h, method, path, bad, body), 401)
        assert_error(await call(h, method, path, s["read"], body), 403)
        assert_error(await call(h, method, path, s["write"], body), 403)
        theirs = await call(h, method, path, s["other_admin"], body)
        assert_error(theirs, 404)
        missing = await call(h, method, path.replace("/ws/", "/nowhere/"), s["admin"], body)
        assert_error(missing, 404)
        # another workspace's Admin learns nothing: the same answer as a missing workspace
        absent = await call(h, method, path.replace("/ws/", "/nowhere/"), s["other_admin"], body)
        assert theirs.json() == absent.json()
    assert await state(h, s["ws"].id) == before


async def test_missing_and_foreign_ids_are_404(harness: Harness) -> None:
    """A counter or token id that is missing, malformed or another workspace's is a 404,
    the same for each; the other workspace's counter and token are untouched."""
    h = harness
    s = await setup(h)
    admin = s["admin"]
    foreign = s["theirs"].id
    for item in (str(foreign), "999999", "0", "abc", "-1", "1" * 20):
        for method in ("GET", "PATCH", "DELETE"):
            body = {"description": "x"} if method == "PATCH" else None
            r = await call(h, method, f"{COUNTERS}/{item}", admin, body)
            assert_error(r, 404)
            assert r.json()["message"] == "no such counter in this workspace"
    for item in (str(s["other_token_id"]), "999999", "x"):
        r = await call(h, "DELETE", f"{TOKENS}/{item}", admin)
        assert_error(r, 404)
        assert r.json()["message"] == "no such token in this workspace"
    theirs = await h.store.get_counter_by_id(foreign)
    assert theirs is not None
    assert theirs.description == ""
    assert all(t.revoked_at is None for t in await h.store.list_tokens(s["theirs"].workspace_id))


async def test_list_pages_and_filters(harness: Harness) -> None:
    """Sorted by name, `limit`/`offset` pages that neither overlap nor skip, `q` matches
    part of the name in any case, `total` counts every match."""
    h = harness
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    names = [f"page-{i:02d}" for i in range(7)] + ["Other", "x%_"]
    for name in names:
        await h.counter(ws, name)
    await h.get("/v2/ws/page-03/up?by=5", admin)
    r = await call(h, "GET", COUNTERS, admin)
    assert r.status_code == 200, r.text
    check_body(document(), r, "/v2/{workspace}/-/counters", 200)
    data = r.json()["data"]
    assert data["total"] == 9
    assert data["limit"] == 50
    assert data["offset"] == 0
    assert [c["name"] for c in data["counters"]] == sorted(names, key=lambda n: n)
    seen: list[str] = []
    for offset in range(0, 9, 4):
        r = await call(h, "GET", f"{COUNTERS}?limit=4&offset={offset}", admin)
        page = r.json()["data"]
        assert page["total"] == 9
        seen += [c["name"] for c in page["counters"]]
    assert seen == [c["name"] for c in data["counters"]]
    seen, after = [], ""
    for _ in range(3):  # by cursor: the same pages
        r = await call(h, "GET", COUNTERS, admin, params={"limit": 4, "after": after})
        check_body(document(), r, "/v2/{workspace}/-/counters", 200)
        page = r.json()["data"]
        seen += [c["name"] for c in page["counters"]]
        after = page["next"]
    assert after is None
    assert seen == [c["name"] for c in data["counters"]]
    r = await call(h, "GET", f"{COUNTERS}?q=PAGE-0&limit=2", admin)
    assert r.json()["data"]["total"] == 7
    assert [c["name"] for c in r.json()["data"]["counters"]] == ["page-00", "page-01"]
    r = await call(h, "GET", COUNTERS, admin, params={"q": "%_"})  # no wildcards
    assert [c["name"] for c in r.json()["data"]["counters"]] == ["x%_"]
    r = await call(h, "GET", COUNTERS, admin, params={"q": "page-03"})
    (c,) = r.json()["data"]["counters"]
    assert (c["up_count"], c["down_count"], c["value"]) == (5, 0, 5)


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=201", "limit=x", "limit=", "offset=-1", "offset=1.5", "limit=1&limit=2",
     "q=a&q=b", "q=" + "x" * 129, "after=%25%25", "after=WzFd", "after=WyJhIl0&offset=1"],
)  # fmt: skip
async def test_bad_list_query_is_400(harness: Harness, query: str) -> None:
    h = harness
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    r = await call(h, "GET", f"{COUNTERS}?{query}", admin)
    assert_error(r, 400)
    check_body(document(), r, "/v2/{workspace}/-/counters", 400)


async def test_create_get_change_delete(harness: Harness) -> None:
    """Create answers 201 with the counter; GET by id; PATCH changes description and
    visibility (a private counter is then hidden from anonymous V2 reads); DELETE removes
    it with its history (a counter of the same name starts from nothing)."""
    h = harness
    doc = document()
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    body = {"name": "visits", "description": "  home page  ", "visibility": "public"}
    r = await call(h, "POST", COUNTERS, admin, body)
    check_body(doc, r, "/v2/{workspace}/-/counters", 201, "post")
    created = r.json()["data"]
    assert r.json()["code"] == "201"
    assert (created["name"], created["description"], created["private"]) == (
        "visits",
        "home page",
        False,
    )
    assert_error(await call(h, "POST", COUNTERS, admin, {"name": "visits"}), 409)
    path = f"{COUNTERS}/{created['id']}"
    one = "/v2/{workspace}/-/counters/{counter_id}"
    check_body(doc, await call(h, "GET", path, admin), one, 200)
    assert (await h.get("/v2/ws/visits/up")).status_code == 200

    r = await call(h, "PATCH", path, admin, {"visibility": "private"})
    check_body(doc, r, one, 200, "patch")
    assert r.json()["data"]["description"] == "home page"  # unchanged
    assert r.json()["data"]["visibility"] == "private"
    assert_error(await h.get("/v2/ws/visits"), 404)  # this node forgot its cached copy
    assert (await h.get("/v2/ws/visits", admin)).json()["data"]["up_count"] == 1
    r = await call(h, "PATCH", path, admin, {"description": "new", "visibility": "public"})
    assert (r.json()["data"]["description"], r.json()["data"]["private"]) == ("new", False)
    assert (await h.get("/v2/ws/visits")).status_code == 200

    r = await call(h, "DELETE", path, admin)
    check_body(doc, r, one, 200, "delete")
    assert r.json()["data"] == {"id": created["id"], "name": "visits"}
    assert_error(await h.get("/v2/ws/visits"), 404)
    assert await h.store.read_counter("ws", "visits") is None
    assert_error(await call(h, "DELETE", path, admin), 404)
    # the history went too: a new counter of that name has empty stats
    await call(h, "POST", COUNTERS, admin, {"name": "visits"})
    stats = (await h.get("/v2/ws/visits/stats")).json()["data"]["stats"]
    assert stats["today"] == {"up": 0, "down": 0}
    assert all(v == {"up": 0, "down": 0} for v in stats["temporal"]["hours"].values())


BAD_CREATE: list[Any] = [
    b"not json",
    b"",
    b"[]",
    b'"visits"',
    {},
    {"name": ""},
    {"name": None},
    {"name": 5},
    {"name": "a/b"},
    {"name": "tab\there"},
    {"name": "x" * 129},
    {"name": " "},
    {"name": " visits"},
    {"name": "visits "},
    {"name": "\u200b"},
    {"name": "ok", "description": 3},
    {"name": "ok", "description": None},
    {"name": "ok", "description": "d" * 501},
    {"name": "ok", "visibility": "secret"},
    {"name": "ok", "visibility": True},
    {"name": "ok", "owner": 1},
    {"name": "ok", "description": "x" * 17_000},
]


@pytest.mark.parametrize("body", BAD_CREATE)
async def test_bad_create_is_400_and_creates_nothing(harness: Harness, body: Any) -> None:
    h = harness
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    before = await state(h, ws.id)
    if isinstance(body, bytes):
        r = await h.client.post(COUNTERS, headers=bearer(admin), content=body)
    else:
        r = await call(h, "POST", COUNTERS, admin, body)
    assert_error(r, 400)
    check_body(document(), r, "/v2/{workspace}/-/counters", 400, "post")
    assert await state(h, ws.id) == before


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", {}, {"description": 1}, {"description": None}, {"visibility": None},
     {"description": "d" * 501}, {"visibility": "x"},
     {"name": "renamed"}, {"description": "ok", "private": True}],
)  # fmt: skip
async def test_bad_change_is_400_and_changes_nothing(harness: Harness, body: Any) -> None:
    h = harness
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    counter = await h.counter(ws, "c", description="keep")
    before = await state(h, ws.id)
    path = f"{COUNTERS}/{counter.id}"
    if isinstance(body, bytes):
        r = await h.client.patch(path, headers=bearer(admin), content=body)
    else:
        r = await call(h, "PATCH", path, admin, body)
    assert_error(r, 400)
    assert await state(h, ws.id) == before


async def test_deleted_counter_vanishes_from_every_node(make_harness: HarnessFactory) -> None:
    """A counter deleted through one node is a 404 on another that had it cached, within
    the cache time (TALLY_TOKEN_CACHE_TTL, here 1 s); a count there before that is a 404
    or a 503 that counts nothing."""
    a = await make_harness()
    b = await make_harness()
    ws = await a.workspace()
    admin = await a.token(ws, Permission.ADMIN)
    counter = await a.counter(ws, "c")
    assert (await b.get("/v2/ws/c/up")).status_code == 200  # b caches it
    r = await call(a, "DELETE", f"{COUNTERS}/{counter.id}", admin)
    assert r.status_code == 200, r.text
    # within the cache time another node may still hold it: a count is refused, not lost
    assert (await b.get("/v2/ws/c/up")).status_code in (404, 503)
    assert await a.store.read_counter("ws", "c") is None
    await asyncio.sleep(1.2)
    assert_error(await b.get("/v2/ws/c"), 404)
    assert_error(await b.get("/v2/ws/c/up"), 404)
    assert_error(await b.get("/v2/ws/c/stats"), 404)


async def test_tokens_list_create_revoke(harness: Harness) -> None:
    """A created token is shown once (the list never shows a secret), works at once with
    its permission and expiry; a revoked one is refused within the cache time."""
    h = harness
    doc = document()
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    body = {"permission": "write", "name": "  ci   deploy ", "expires_in_days": 7}
    r = await call(h, "POST", TOKENS, admin, body)
    check_body(doc, r, "/v2/{workspace}/-/tokens", 201, "post")
    new = r.json()["data"]
    assert new["permission"] == "write"
    assert new["name"] == "ci deploy"
    assert new["expires_at"] is not None
    assert new["token"].startswith(new["prefix"])
    assert (await h.get("/v2/ws/made/up?by=3", new["token"])).status_code == 200
    r = await call(h, "POST", TOKENS, admin, {"permission": "read"})
    assert (r.json()["data"]["name"], r.json()["data"]["expires_at"]) == ("", None)

    r = await call(h, "GET", TOKENS, admin)
    check_body(doc, r, "/v2/{workspace}/-/tokens", 200)
    listed = r.json()["data"]["tokens"]
    assert len(listed) == 3
    assert all("token" not in t for t in listed)
    assert new["token"] not in r.text

    r = await call(h, "DELETE", f"{TOKENS}/{new['id']}", admin)
    check_body(doc, r, "/v2/{workspace}/-/tokens/{token_id}", 200, "delete")
    assert r.json()["data"]["revoked_at"] is not None
    again = await call(h, "DELETE", f"{TOKENS}/{new['id']}", admin)  # no change
    assert again.json()["data"]["revoked_at"] == r.json()["data"]["revoked_at"]
    await asyncio.sleep(1.2)
    assert_error(await h.get("/v2/ws/made/up", new["token"]), 401)


@pytest.mark.parametrize(
    "body",
    [b"nope", b"[1]", {}, {"permission": "root"}, {"permission": 3}, {"permission": None},
     {"permission": "read", "name": "n" * 101}, {"permission": "read", "name": 1},
     {"permission": "read", "name": None},
     {"permission": "read", "expires_in_days": 0},
     {"permission": "read", "expires_in_days": 3651},
     {"permission": "read", "expires_in_days": "7"},
     {"permission": "read", "expires_in_days": True},
     {"permission": "read", "expires_in_days": 1.5},
     {"permission": "read", "secret": "mine"}],
)  # fmt: skip
async def test_bad_token_create_is_400_and_creates_nothing(harness: Harness, body: Any) -> None:
    h = harness
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    before = await state(h, ws.id)
    if isinstance(body, bytes):
        r = await h.client.post(TOKENS, headers=bearer(admin), content=body)
    else:
        r = await call(h, "POST", TOKENS, admin, body)
    assert_error(r, 400)
    assert await state(h, ws.id) == before


async def test_methods_preflight_and_v2_names_beside(harness: Harness) -> None:
    """Other methods are a 405 with Allow; OPTIONS answers the preflight; counters named
    "-", "counters" or "tokens" keep their V2 routes."""
    h = harness
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    r = await call(h, "PUT", COUNTERS, admin)
    assert_error(r, 405)
    assert r.headers["allow"] == "GET, POST, OPTIONS"
    r = await call(h, "POST", f"{TOKENS}/1", admin)
    assert_error(r, 405)
    assert r.headers["allow"] == "DELETE, OPTIONS"
    r = await h.client.options(f"{COUNTERS}/1")
    assert r.status_code == 204
    assert r.headers["access-control-allow-methods"] == "GET, PATCH, DELETE, OPTIONS"
    for name in ("-", "counters", "tokens", "_counters"):
        assert (await h.get(f"/v2/ws/{name}/up", admin)).json()["data"]["name"] == name
        assert (await h.get(f"/v2/ws/{name}")).json()["data"]["up_count"] == 1
    assert (await h.get("/v2/ws/-/stats")).status_code == 200
    r = await call(h, "GET", f"{COUNTERS}/", admin)  # a trailing slash is the same route
    assert r.json()["data"]["total"] == 4
    assert_error(await call(h, "GET", f"{COUNTERS}/1/more", admin), 404)


async def test_rate_limited_like_v2(make_harness: HarnessFactory) -> None:
    """Management requests count against the V2 rate limit, per path and token, with
    its headers and a documented 429 that changes nothing."""
    h = await make_harness(rate_limit=RateLimit(2, 60.0))
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    assert (await call(h, "POST", COUNTERS, admin, {"name": "a"})).status_code == 201
    r = await call(h, "POST", COUNTERS, admin, {"name": "b"})
    assert r.headers["x-ratelimit-remaining"] == "0"
    r = await call(h, "POST", COUNTERS, admin, {"name": "c"})
    check_body(document(), r, "/v2/{workspace}/-/counters", 429, "post")
    assert await h.store.read_counter("ws", "c") is None
    assert (await call(h, "GET", TOKENS, admin)).status_code == 200  # another path
