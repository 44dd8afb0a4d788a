"""The management API's rules: a counter's allowed origins and bounds through PATCH
/v2/{ws}/-/counters/{id}, the workspace's allowed origins and V1 flag through
/v2/{ws}/-/settings; applied at once by the node that took the change, checked like the
CLI, a 400 that changes nothing on bad input. The permission matrix of both is in
test_management.py (test_permission_matrix)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Harness, HarnessFactory
from helpers import assert_error, bearer, flush, import_bounds
from test_management import COUNTERS, SETTINGS, call, state
from test_openapi import check_body
from test_store_change import outside

from tally import counters
from tally.models import CounterChange, Permission
from tally.web.openapi import document

ONE = "/v2/{workspace}/-/counters/{counter_id}"
SETTINGS_ROUTE = "/v2/{workspace}/-/settings"
SITE = "https://blog.example"


async def test_counter_rules_are_set_shown_and_applied(harness: Harness) -> None:
    """PATCH sets allowed origins, floor and ceiling (normalized origins, fields left
    out kept, null or [] clearing); GET shows them; this node applies them at once."""
    h = harness
    doc = document()
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    counter = await h.counter(ws, "c")
    path = f"{COUNTERS}/{counter.id}"
    body = {"allowed_origins": ["HTTPS://Blog.Example:443/", SITE], "ceiling": 1}
    r = await call(h, "PATCH", path, admin, body)
    check_body(doc, r, ONE, 200, "patch")
    data = r.json()["data"]
    assert (data["allowed_origins"], data["floor"], data["ceiling"]) == ([SITE], None, 1)
    check_body(doc, got := await call(h, "GET", path, admin), ONE, 200)
    assert got.json()["data"] == data

    assert_error(await h.client.get("/v2/ws/c/up", headers={"Origin": "https://x.example"}), 403)
    assert (await h.client.get("/v2/ws/c/up", headers={"Origin": SITE})).status_code == 200
    assert_error(await h.client.get("/v2/ws/c/up", headers={"Origin": SITE}), 409)
    assert (await h.get("/v2/ws/c", admin)).json()["data"]["up_count"] == 1

    r = await call(h, "PATCH", path, admin, {"floor": 1, "description": "kept rules"})
    data = r.json()["data"]
    assert (data["allowed_origins"], data["floor"], data["ceiling"]) == ([SITE], 1, 1)
    assert data["description"] == "kept rules"
    assert_error(await h.get("/v2/ws/c/down", admin), 409)  # the floor, at once

    r = await call(h, "PATCH", path, admin, {"allowed_origins": [], "ceiling": None})
    data = r.json()["data"]
    assert (data["allowed_origins"], data["floor"], data["ceiling"]) == ([], 1, None)
    assert (await h.get("/v2/ws/c/up")).status_code == 200  # any origin, no ceiling
    stored = await h.store.get_counter_by_id(counter.id)
    assert stored is not None
    assert (stored.origins, stored.floor, stored.ceiling) == ((), 1, None)
    assert stored.up_count == 2


BAD_RULES: list[Any] = [
    {"floor": "1"},
    {"floor": 1.5},
    {"floor": True},
    {"ceiling": [1]},
    {"floor": 2**62 + 1},
    {"ceiling": -(2**62) - 1},
    {"floor": 5, "ceiling": 4},
    {"floor": 5.5},
    {"allowed_origins": SITE},
    {"allowed_origins": None},
    {"allowed_origins": [1]},
    {"allowed_origins": ["ftp://files.example"]},
    {"allowed_origins": ["https://example.com/path"]},
    {"allowed_origins": [""]},
    {"allowed_origins": [f"{SITE}, https://b.example"]},
    {"allowed_origins": [f"https://s{i}.example" for i in range(101)]},
    {"description": "valid", "visibility": "private", "ceiling": "x"},
    {"description": "valid", "allowed_origins": ["nope"]},
]


@pytest.mark.parametrize("body", BAD_RULES)
async def test_bad_counter_rules_are_400_and_change_nothing(harness: Harness, body: Any) -> None:
    h = harness
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    counter = await h.counter(ws, "c", description="keep")
    await h.store.change_counter(counter.id, CounterChange(bounds=(0, 10), origins=(SITE,)))
    before = await state(h, ws.id)
    r = await call(h, "PATCH", f"{COUNTERS}/{counter.id}", admin, body)
    assert_error(r, 400)
    check_body(document(), r, ONE, 400, "patch")
    assert await state(h, ws.id) == before


@pytest.mark.parametrize("body", [{"floor": 11}, {"ceiling": -1}, {"floor": 11.0}])
async def test_one_bound_past_the_stored_other_is_409_and_changes_nothing(
    harness: Harness, body: Any
) -> None:
    """A body that contradicts itself (floor above ceiling) is a 400; one new bound
    against the counter's stored other bound (0 to 10) is a conflict with the counter:
    409, nothing changed. Whole numbers may be written 11.0, as JSON Schema allows."""
    h = harness
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    counter = await h.counter(ws, "c", description="keep")
    await h.store.change_counter(counter.id, CounterChange(bounds=(0, 10), origins=(SITE,)))
    before = await state(h, ws.id)
    r = await call(h, "PATCH", f"{COUNTERS}/{counter.id}", admin, body)
    assert_error(r, 409)
    assert "nothing was changed" in r.json()["message"]
    check_body(document(), r, ONE, 409, "patch")
    assert await state(h, ws.id) == before
    r = await call(h, "PATCH", f"{COUNTERS}/{counter.id}", admin, {"floor": -3.0})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["floor"] == -3


async def test_rules_of_a_missing_counter_are_404(harness: Harness) -> None:
    h = harness
    ws = await h.workspace()
    other = await h.workspace("other")
    theirs = await h.counter(other, "theirs")
    admin = await h.token(ws, Permission.ADMIN)
    for item in (str(theirs.id), "999999"):
        r = await call(h, "PATCH", f"{COUNTERS}/{item}", admin, {"floor": 0})
        assert_error(r, 404)
    stored = await h.store.get_counter_by_id(theirs.id)
    assert stored is not None
    assert stored.floor is None


async def test_settings_are_shown_changed_and_applied(harness: Harness) -> None:
    """GET shows the V1 flag and allowed origins; PATCH changes either (the other kept);
    this node applies the change at once: V1 answers, counters without their own list
    take the workspace's."""
    h = harness
    doc = document()
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    own = await h.counter(ws, "own")
    await h.store.change_counter(own.id, CounterChange(bounds=(None, None), origins=(SITE,)))
    await h.counter(ws, "c")
    r = await call(h, "GET", SETTINGS, admin)
    check_body(doc, r, SETTINGS_ROUTE, 200)
    data = r.json()["data"]
    assert (data["slug"], data["v1_open"], data["allowed_origins"]) == ("ws", False, [])
    assert (await h.get("/v2/ws/c/up")).status_code == 200  # cached by this node
    assert (await h.get("/v1/ws/c")).status_code == 404  # closed for V1

    r = await call(h, "PATCH", SETTINGS, admin, {"v1_open": True})
    check_body(doc, r, SETTINGS_ROUTE, 200, "patch")
    assert (r.json()["data"]["v1_open"], r.json()["data"]["allowed_origins"]) == (True, [])
    assert (await h.get("/v1/ws/c")).json()["count"] == 1

    r = await call(h, "PATCH", SETTINGS, admin, {"allowed_origins": ["https://*.shop.example"]})
    data = r.json()["data"]
    assert (data["v1_open"], data["allowed_origins"]) == (True, ["https://*.shop.example"])
    assert_error(await h.get("/v2/ws/c/up"), 403)  # no Origin: refused at once
    shop = {"Origin": "https://www.shop.example"}
    assert (await h.client.get("/v2/ws/c/up", headers=shop)).status_code == 200
    # a counter's own list replaces the workspace's; a token is not affected
    assert (await h.client.get("/v2/ws/own/up", headers={"Origin": SITE})).status_code == 200
    assert_error(await h.client.get("/v2/ws/own/up", headers=shop), 403)
    assert (await h.client.get("/v2/ws/c/up", headers=bearer(admin))).status_code == 200

    r = await call(h, "PATCH", SETTINGS, admin, {"v1_open": False, "allowed_origins": []})
    assert (r.json()["data"]["v1_open"], r.json()["data"]["allowed_origins"]) == (False, [])
    assert (await h.get("/v2/ws/c/up")).status_code == 200
    assert (await h.get("/v1/ws/c")).status_code == 404
    stored = await h.store.get_workspace("ws")
    assert stored is not None
    assert (stored.v1_open, stored.origins) == (False, ())


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", {}, {"v1_open": "yes"}, {"v1_open": 1}, {"v1_open": None},
     {"allowed_origins": None}, {"allowed_origins": ["nope"]}, {"name": "renamed"},
     {"v1_open": False, "allowed_origins": ["https://ok.example", "bad"]},
     {"v1_open": False, "slug": "x"}],
)  # fmt: skip
async def test_bad_settings_are_400_and_change_nothing(harness: Harness, body: Any) -> None:
    h = harness
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    await h.store.set_workspace_rules(ws.id, v1_open=True, origins=(SITE,))
    before = await state(h, ws.id)
    if isinstance(body, bytes):
        r = await h.client.patch(SETTINGS, headers=bearer(admin), content=body)
    else:
        r = await call(h, "PATCH", SETTINGS, admin, body)
    assert_error(r, 400)
    check_body(document(), r, SETTINGS_ROUTE, 400, "patch")
    assert await state(h, ws.id) == before


async def test_settings_methods_and_paths(harness: Harness) -> None:
    """Settings take GET and PATCH (405 with Allow otherwise); /-/settings/x is no route;
    a counter named "settings" keeps its V2 routes."""
    h = harness
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    r = await call(h, "DELETE", SETTINGS, admin)
    assert_error(r, 405)
    assert r.headers["allow"] == "GET, PATCH, OPTIONS"
    assert_error(await call(h, "GET", f"{SETTINGS}/1", admin), 404)
    assert (await h.get("/v2/ws/settings/up", admin)).json()["data"]["name"] == "settings"
    r = await h.client.options(SETTINGS)
    assert r.headers["access-control-allow-methods"] == "GET, PATCH, OPTIONS"


@pytest.mark.parametrize("durability", ["commit", "buffered"])
async def test_a_new_bound_the_value_breaks_is_409_and_changes_nothing(
    make_harness: HarnessFactory, durability: str
) -> None:
    """As in the dashboard and the CLI (tally.rules.check_value): a new or changed floor
    or ceiling that the counter's value (pending buffered counts included) already breaks
    is a 409 naming the value, and nothing of the body is written; a bound equal to the
    value is fine; an unchanged bound is not checked again."""
    h = await make_harness(durability=durability, flush_interval=60.0)
    doc = document()
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    counter = await h.counter(ws, "c", description="keep")
    path = f"{COUNTERS}/{counter.id}"
    for _ in range(3):
        assert (await h.get("/v2/ws/c/up", admin)).status_code == 200
    before = await state(h, ws.id)
    for body, says in [
        ({"ceiling": 2}, "the counter's value is 3, above a ceiling of 2"),
        ({"floor": 4, "description": "not saved"}, "the counter's value is 3, below a floor of 4"),
        ({"floor": 0, "ceiling": 2, "unique": True}, "above a ceiling of 2"),
    ]:
        r = await call(h, "PATCH", path, admin, body)
        assert_error(r, 409)
        check_body(doc, r, ONE, 409, "patch")
        assert says in r.json()["message"]
        assert "nothing was changed" in r.json()["message"]
        assert await state(h, ws.id) == before
        stored = await h.store.get_counter_by_id(counter.id)
        assert stored is not None
        assert stored.unique_window == 0
    r = await call(h, "PATCH", path, admin, {"floor": 3, "ceiling": 3})
    assert (r.json()["data"]["floor"], r.json()["data"]["ceiling"]) == (3, 3)
    # a ceiling below the value (as an import may leave it) may stay while the floor or
    # the origins change
    await import_bounds(h.store, counter.id, None, 1)
    r = await call(h, "PATCH", path, admin, {"floor": -5, "allowed_origins": [SITE]})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert (data["floor"], data["ceiling"], data["allowed_origins"]) == (-5, 1, [SITE])
    assert_error(await call(h, "PATCH", path, admin, {"ceiling": 2}), 409)
    # above its ceiling, the counter is held to it exactly: no up, downs towards it
    assert_error(await h.get("/v2/ws/c/up", admin), 409)
    assert (await h.get("/v2/ws/c/down", admin)).json()["data"]["value"] == 2
    r = await call(h, "PATCH", path, admin, {"ceiling": None})
    assert r.json()["data"]["ceiling"] is None


_FAIL_HOURS_SQLITE = """
CREATE TRIGGER fail_hours BEFORE INSERT ON counter_hours
BEGIN SELECT RAISE(ABORT, 'injected failure'); END
"""
_FAIL_HOURS_POSTGRES = """
CREATE FUNCTION fail_hours() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;
CREATE TRIGGER fail_hours BEFORE INSERT ON counter_hours
FOR EACH ROW EXECUTE FUNCTION fail_hours()
"""


async def test_a_new_bound_waits_a_while_for_the_pending_counts(
    make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Buffered mode: a new bound is checked once this node's pending counts are
    committed; while the database refuses them, the PATCH is a 503 after
    counters.PENDING_WAIT that changes nothing, and once it takes them, the PATCH works."""
    monkeypatch.setattr(counters, "PENDING_WAIT", 0.3)
    h = await make_harness(durability="buffered", flush_interval=60.0)
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    counter = await h.counter(ws, "c")
    path = f"{COUNTERS}/{counter.id}"
    before = await state(h, ws.id)
    with outside(h.store) as conn:
        conn.script(_FAIL_HOURS_SQLITE, _FAIL_HOURS_POSTGRES)
        try:
            assert (await h.get("/v2/ws/c/up", admin)).status_code == 200  # pending
            r = await call(h, "PATCH", path, admin, {"ceiling": 5, "description": "x"})
            assert_error(r, 503)
            assert await state(h, ws.id) == before
        finally:
            conn.script("DROP TRIGGER fail_hours", "DROP TRIGGER fail_hours ON counter_hours")
    await flush([h])  # the retried batch lands
    r = await call(h, "PATCH", path, admin, {"ceiling": 0, "description": "x"})
    assert_error(r, 409)
    assert "the counter's value is 1" in r.json()["message"]
    r = await call(h, "PATCH", path, admin, {"ceiling": 1, "description": "x"})
    assert (r.json()["data"]["ceiling"], r.json()["data"]["up_count"]) == (1, 1)
