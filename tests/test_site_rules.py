"""A counter's limits (floor, ceiling, allowed origins) and a workspace's counting rules
(allowed origins, open for V1) on the website, in-process on every backend: what the
forms save is what the API then applies; bad input, a bound the value already breaks,
a missing CSRF token and members below the owner role change nothing."""

from __future__ import annotations

import pytest
from conftest import BrowserFactory, Harness, HarnessFactory
from helpers import import_bounds
from site_client import SiteClient, text
from test_site_workspaces import member, verified

from tally.models import Counter, CounterChange, Permission, Role, Workspace


async def owner_with_counter(
    harness: Harness, make_browser: BrowserFactory
) -> tuple[SiteClient, Workspace, Counter]:
    b = await verified(harness, make_browser, "ann@example.com")
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    counter = await harness.counter(ws, "stock")
    await b.get(f"/w/ann/c/{counter.id}")  # for the CSRF token
    return b, ws, counter


async def stored(harness: Harness, counter: Counter) -> tuple[object, ...]:
    c = await harness.store.get_counter_by_id(counter.id)
    assert c is not None
    return (c.floor, c.ceiling, c.origins)


async def test_the_owner_sets_a_counters_limits_and_the_api_applies_them(
    make_harness: HarnessFactory, make_browser: BrowserFactory
) -> None:
    """Floor, ceiling and origins (one a line, normalized) are saved; an up past the
    ceiling is then a 409, an anonymous up from another site a 403; empty fields clear.
    (No settings cache, so the API sees each change at once.)"""
    harness = await make_harness(token_cache_ttl=0.0)
    b, _ws, counter = await owner_with_counter(harness, make_browser)
    page = f"/w/ann/c/{counter.id}"
    r = await b.post(
        page + "/rules",
        {
            "floor": "0",
            "ceiling": " 2 ",
            "origins": "https://Blog.Example:443/\r\nhttp://localhost:8080\n\nhttps://*.shop.example",
        },
    )
    assert r.status_code == 303, text(r)
    assert r.headers["location"] == page
    assert await stored(harness, counter) == (
        0,
        2,
        ("https://blog.example", "http://localhost:8080", "https://*.shop.example"),
    )
    shown = await b.get(page)
    assert "The limits are saved." in text(shown)
    assert 'value="2"' in shown.text
    assert "https://*.shop.example" in shown.text
    ok = {"Origin": "https://a.shop.example"}
    for _ in range(2):
        assert (await harness.client.get("/v2/ann/stock/up", headers=ok)).status_code == 200
    assert (await harness.client.get("/v2/ann/stock/up", headers=ok)).status_code == 409
    other = {"Origin": "https://elsewhere.example"}
    assert (await harness.client.get("/v2/ann/stock/down", headers=other)).status_code == 403
    await b.get(page)
    cleared = await b.post(page + "/rules", {"floor": "", "ceiling": "", "origins": ""})
    assert cleared.status_code == 303
    assert await stored(harness, counter) == (None, None, ())
    assert (await harness.client.get("/v2/ann/stock/up", headers=other)).status_code == 200


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"floor": "abc"}, 400, "The floor must be a whole number"),
        ({"floor": "1.5"}, 400, "The floor must be a whole number"),
        ({"ceiling": "1e3"}, 400, "The ceiling must be a whole number"),
        ({"ceiling": str(2**62 + 1)}, 400, "The ceiling must be a whole number"),
        ({"floor": "10", "ceiling": "5"}, 400, "The floor (10) is above the ceiling (5)."),
        ({"origins": "example.com"}, 400, "'example.com' is not an origin"),
        ({"origins": "https://ok.example\nftp://files.example"}, 400, "is not an origin"),
        ({"origins": "https://ok.example/path"}, 400, "is not an origin"),
        ({"origins": "\n".join(f"https://s{i}.example" for i in range(101))}, 400, "At most 100"),
        ({"ceiling": "2"}, 409, "The counter's value is 3, above a ceiling of 2"),
        ({"floor": "4"}, 409, "The counter's value is 3, below a floor of 4"),
    ],
)
async def test_bad_limits_are_refused_in_the_form_and_change_nothing(
    harness: Harness,
    make_browser: BrowserFactory,
    form: dict[str, str],
    status: int,
    message: str,
) -> None:
    """Each bad field is named in an error inside the form, the other fields keep what was
    typed, and the counter's rules stay as they were."""
    b, ws, counter = await owner_with_counter(harness, make_browser)
    await harness.store.change_counter(
        counter.id, CounterChange(bounds=(-100, 100), origins=("https://before.example",))
    )
    token = await harness.token(ws, Permission.WRITE)
    for _ in range(3):
        await harness.get("/v2/ann/stock/up", token)
    submitted = {"floor": "", "ceiling": "", "origins": "", **form}
    r = await b.post(f"/w/ann/c/{counter.id}/rules", submitted)
    assert r.status_code == status
    assert 'id="rules-error"' in r.text
    assert message in text(r)
    assert await stored(harness, counter) == (-100, 100, ("https://before.example",))


async def test_a_bound_the_value_breaks_may_stay_when_it_is_not_changed(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """Only a new or changed bound is checked against the value: a ceiling an import set
    below the value can be kept while the origins change."""
    b, ws, counter = await owner_with_counter(harness, make_browser)
    token = await harness.token(ws, Permission.WRITE)
    for _ in range(5):
        await harness.get("/v2/ann/stock/up", token)
    await import_bounds(harness.store, counter.id, None, 3)
    r = await b.post(
        f"/w/ann/c/{counter.id}/rules",
        {"floor": "", "ceiling": "3", "origins": "https://new.example"},
    )
    assert r.status_code == 303, text(r)
    assert await stored(harness, counter) == (None, 3, ("https://new.example",))


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR])
async def test_members_below_owner_cannot_change_limits_or_rules(
    harness: Harness, make_browser: BrowserFactory, role: Role
) -> None:
    """A viewer or an editor sees the limits but has no form, and a POST is a 403 that
    changes neither the counter's nor the workspace's rules; an outsider gets 404."""
    await verified(harness, make_browser, "ann@example.com")
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    counter = await harness.counter(ws, "stock")
    await harness.store.change_counter(counter.id, CounterChange(bounds=(0, 9), origins=()))
    b = await member(harness, make_browser, "bob@example.com", "ann", role)
    page = await b.get(f"/w/ann/c/{counter.id}")
    assert page.status_code == 200
    assert "Floor: 0 · ceiling: 9" in text(page)
    assert f"/w/ann/c/{counter.id}/rules" not in page.text
    r = await b.post(f"/w/ann/c/{counter.id}/rules", {"floor": "", "ceiling": "", "origins": ""})
    assert r.status_code == 403
    assert await stored(harness, counter) == (0, 9, ())
    r = await b.post("/w/ann/settings/rules", {"origins": "https://x.example", "v1": "open"})
    assert r.status_code == 403
    outsider = await verified(harness, make_browser, "eve@example.com")
    await outsider.get("/w/eve")
    r = await outsider.post(f"/w/ann/c/{counter.id}/rules", {"ceiling": "1"})
    assert r.status_code == 404
    r = await outsider.post("/w/ann/settings/rules", {"v1": "open"})
    assert r.status_code == 404
    after = await harness.store.get_workspace("ann")
    assert after is not None
    assert (after.v1_open, after.origins) == (False, ())
    assert await stored(harness, counter) == (0, 9, ())


async def test_forms_without_the_csrf_token_change_nothing(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    b, _ws, counter = await owner_with_counter(harness, make_browser)
    r = await b.post(f"/w/ann/c/{counter.id}/rules", {"ceiling": "5"}, csrf="")
    assert r.status_code == 403
    r = await b.post("/w/ann/settings/rules", {"v1": "open"}, csrf="wrong")
    assert r.status_code == 403
    assert await stored(harness, counter) == (None, None, ())
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    assert not ws.v1_open


async def test_the_owner_sets_the_workspaces_origins_and_v1(
    make_harness: HarnessFactory, make_browser: BrowserFactory
) -> None:
    """The settings page saves the workspace's origins and V1 flag; the V1 endpoint and
    the origin check follow; a bad origin is refused in the form and changes nothing."""
    harness = await make_harness(token_cache_ttl=0.0)
    b, _ws, counter = await owner_with_counter(harness, make_browser)
    assert (await harness.client.get("/v1/ann/stock/")).status_code == 404
    await b.get("/w/ann/settings")
    r = await b.post("/w/ann/settings/rules", {"origins": "https://blog.example\n", "v1": "open"})
    assert r.status_code == 303
    assert "The counting rules are saved." in text(await b.get("/w/ann/settings"))
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    assert (ws.v1_open, ws.origins) == (True, ("https://blog.example",))
    assert (await harness.client.get("/v1/ann/stock/")).status_code == 200
    other = {"Origin": "https://elsewhere.example"}
    assert (await harness.client.get("/v2/ann/stock/up", headers=other)).status_code == 403
    mine = {"Referer": "https://blog.example/post/1"}
    assert (await harness.client.get("/v2/ann/stock/up", headers=mine)).status_code == 200
    page = await b.get(f"/w/ann/c/{counter.id}")
    assert "Empty: the workspace's list (https://blog.example)" in text(page)
    bad = await b.post("/w/ann/settings/rules", {"origins": "https://ok.example\nnot an origin"})
    assert bad.status_code == 400
    assert 'id="rules-error"' in bad.text
    assert "is not an origin" in text(bad)
    assert "not an origin</textarea>" in bad.text  # what was typed stays in the form
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    assert (ws.v1_open, ws.origins) == (True, ("https://blog.example",))
    await b.get("/w/ann/settings")
    closed = await b.post("/w/ann/settings/rules", {"origins": ""})
    assert closed.status_code == 303
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    assert (ws.v1_open, ws.origins) == (False, ())


async def window(harness: Harness, counter: Counter) -> int:
    c = await harness.store.get_counter_by_id(counter.id)
    assert c is not None
    return c.unique_window


async def test_the_owner_sets_the_unique_visitor_window(
    make_harness: HarnessFactory, make_browser: BrowserFactory
) -> None:
    """The limits form's unique-visitor window (a duration, on, off or empty) is saved
    as the CLI and the API save it and the API applies it: one anonymous visitor's ups
    count once while it is on; a form without the field keeps the window."""
    harness = await make_harness(token_cache_ttl=0.0)
    b, _ws, counter = await owner_with_counter(harness, make_browser)
    page = f"/w/ann/c/{counter.id}"
    r = await b.post(page + "/rules", {"floor": "", "ceiling": "", "origins": "", "unique": "7d"})
    assert r.status_code == 303, text(r)
    assert await window(harness, counter) == 7 * 86400
    shown = await b.get(page)
    assert 'id="unique" name="unique"' in shown.text
    assert 'value="7d"' in shown.text
    first = (await harness.client.get("/v2/ann/stock/up")).json()["data"]
    second = (await harness.client.get("/v2/ann/stock/up")).json()["data"]
    assert (first["counted"], second["counted"], second["up_count"]) == (True, False, 1)
    for typed, seconds in [(" on ", 86400), ("36h", 36 * 3600), ("OFF", 0), ("90m", 5400)]:
        await b.get(page)
        r = await b.post(page + "/rules", {"floor": "", "ceiling": "", "unique": typed})
        assert r.status_code == 303, text(r)
        assert await window(harness, counter) == seconds
    await b.get(page)
    r = await b.post(page + "/rules", {"floor": "", "ceiling": "5", "origins": ""})
    assert r.status_code == 303
    assert await window(harness, counter) == 5400  # no field: kept
    await b.get(page)
    r = await b.post(page + "/rules", {"floor": "", "ceiling": "5", "unique": ""})
    assert r.status_code == 303
    assert await window(harness, counter) == 0  # empty: off
    third = (await harness.client.get("/v2/ann/stock/up")).json()["data"]
    assert third["up_count"] == 2
    assert "counted" not in third


async def test_the_owner_counts_visitors_by_address_alone(
    make_harness: HarnessFactory, make_browser: BrowserFactory
) -> None:
    """The limits form's "A visitor is" choice is saved and applied: by address alone,
    a new User-Agent counts nothing more; a form without it keeps it; a bad value is
    a 400 that changes nothing."""
    harness = await make_harness(token_cache_ttl=0.0)
    b, _ws, counter = await owner_with_counter(harness, make_browser)
    page = f"/w/ann/c/{counter.id}"
    form = {"floor": "", "ceiling": "", "origins": "", "unique": "1d", "unique_by": "address"}
    r = await b.post(page + "/rules", form)
    assert r.status_code == 303, text(r)
    c = await harness.store.get_counter_by_id(counter.id)
    assert c is not None
    assert (c.unique_window, c.unique_by_address) == (86400, True)
    shown = await b.get(page)
    assert '<option value="address" selected>' in shown.text
    for agent, counted in (("a/1", True), ("b/2", False)):
        r = await harness.client.get("/v2/ann/stock/up", headers={"User-Agent": agent})
        assert r.json()["data"]["counted"] is counted
    r = await b.post(page + "/rules", {"floor": "", "ceiling": "", "unique": "2d"})
    assert r.status_code == 303
    c = await harness.store.get_counter_by_id(counter.id)
    assert c is not None
    assert (c.unique_window, c.unique_by_address) == (2 * 86400, True)  # no field: kept
    await b.get(page)
    r = await b.post(page + "/rules", {**form, "unique": "3d", "unique_by": "cookie"})
    assert r.status_code == 400
    assert "Unique_by must be one of address_agent, address." in text(r)
    c = await harness.store.get_counter_by_id(counter.id)
    assert c is not None
    assert (c.unique_window, c.unique_by_address) == (2 * 86400, True)


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"unique": "59m"}, 400, "The unique window must be from 3600 s (1h) to 2592000 s"),
        ({"unique": "31d"}, 400, "The unique window must be from 3600 s"),
        ({"unique": "soon"}, 400, "Unknown window 'soon'"),
        ({"unique": "1.5h"}, 400, "Unknown window"),
        ({"unique": "24h", "floor": "x"}, 400, "The floor must be a whole number"),
        ({"unique": "24h", "origins": "nope"}, 400, "is not an origin"),
        ({"unique": "24h", "ceiling": "2"}, 409, "The counter's value is 3, above a ceiling"),
    ],
)
async def test_a_bad_window_or_limit_changes_neither(
    harness: Harness,
    make_browser: BrowserFactory,
    form: dict[str, str],
    status: int,
    message: str,
) -> None:
    """A bad window is refused in the form like a bad limit, and any refused field
    leaves both the limits and the window as they were; what was typed stays."""
    b, ws, counter = await owner_with_counter(harness, make_browser)
    await harness.store.change_counter(counter.id, CounterChange(unique_window=7200))
    token = await harness.token(ws, Permission.WRITE)
    for _ in range(3):
        await harness.get("/v2/ann/stock/up", token)
    r = await b.post(
        f"/w/ann/c/{counter.id}/rules", {"floor": "", "ceiling": "", "origins": "", **form}
    )
    assert r.status_code == status
    assert message in text(r)
    assert f'value="{form["unique"]}"' in r.text
    assert await stored(harness, counter) == (None, None, ())
    assert await window(harness, counter) == 7200


@pytest.mark.parametrize(
    ("typed", "field", "now"),
    [
        ("24h", "24h", "24h (1 day)"),
        ("1d", "24h", "24h (1 day)"),
        ("on", "24h", "24h (1 day)"),
        ("48h", "48h", "48h (2 days)"),
        ("168h", "7d", "7d (168 hours)"),
        ("7d", "7d", "7d (168 hours)"),
        ("36h", "36h", "36h"),
    ],
)
async def test_the_window_comes_back_as_typed(
    harness: Harness, make_browser: BrowserFactory, typed: str, field: str, now: str
) -> None:
    """A window typed as 24h is shown as 24h (it used to come back as 1d); a whole number
    of days shows both units, so whichever was typed is on the page."""
    b, _ws, counter = await owner_with_counter(harness, make_browser)
    page = f"/w/ann/c/{counter.id}"
    r = await b.post(page + "/rules", {"floor": "", "ceiling": "", "origins": "", "unique": typed})
    assert r.status_code == 303, text(r)
    shown = await b.get(page)
    assert f'name="unique" autocomplete="off" spellcheck="false" value="{field}"' in shown.text
    assert f'Now: <strong id="unique-now">{now}</strong>.' in shown.text


async def test_viewers_see_the_window(harness: Harness, make_browser: BrowserFactory) -> None:
    """Members below owner see the window with the limits, and no field for it."""
    await verified(harness, make_browser, "ann@example.com")
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    counter = await harness.counter(ws, "stock")
    await harness.store.change_counter(counter.id, CounterChange(unique_window=86400))
    b = await member(harness, make_browser, "bob@example.com", "ann", Role.EDITOR)
    page = await b.get(f"/w/ann/c/{counter.id}")
    assert "unique visitors: 24h (1 day)" in text(page)
    assert 'name="unique"' not in page.text


async def test_the_counter_quota_form(harness: Harness, make_browser: BrowserFactory) -> None:
    """An owner sets the workspace's counter quota, up to the server's, or clears it;
    a bad one is refused with the reason and changes nothing."""
    b, ws, _counter = await owner_with_counter(harness, make_browser)
    page = await b.get("/w/ann/settings")
    assert "1 counter, of 100,000 at most (the server's quota)" in text(page)
    r = await b.post("/w/ann/settings/quota", {"quota": "5"})
    assert r.status_code == 303
    assert await harness.store.counter_usage(ws.id) == (1, 5)
    assert "1 counter, of 5 at most." in text(await b.get("/w/ann/settings"))
    for bad in ("x", "0", "-3", "100001", "1.5"):
        r = await b.post("/w/ann/settings/quota", {"quota": bad})
        assert r.status_code == 400, bad
        assert "counter quota must be a whole number" in text(r)
        assert await harness.store.counter_usage(ws.id) == (1, 5)
    r = await b.post("/w/ann/settings/quota", {"quota": ""})
    assert r.status_code == 303
    assert await harness.store.counter_usage(ws.id) == (1, None)
