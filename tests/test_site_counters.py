"""Counters on the website, in-process on every backend: the list (search, sort, pages),
create, edit, reset, delete, the live counts and the chart data."""

from __future__ import annotations

import html
import re

import pytest
from conftest import BrowserFactory, Harness
from site_client import SiteClient, text

from tally.models import Permission, Workspace
from tally.storage import counter_lists


async def owner(harness: Harness, make_browser: BrowserFactory) -> tuple[SiteClient, Workspace]:
    b = await make_browser(harness)
    assert (await b.sign_up("ann@example.com")).status_code == 303
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    return b, ws


async def test_create_a_counter(harness: Harness, make_browser: BrowserFactory) -> None:
    """The form creates a public or private counter with its description."""
    b, _ws = await owner(harness, make_browser)
    r = await b.submit(
        "/w/ann/counters/new",
        {"name": "downloads", "description": "the zip", "visibility": "private"},
    )
    assert r.status_code == 303
    counter = await harness.store.read_counter("ann", "downloads")
    assert counter is not None
    assert counter.private
    assert counter.description == "the zip"
    assert r.headers["location"] == f"/w/ann/c/{counter.id}"


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("", 400, "name is empty"),
        ("a/b", 400, "must not contain '/'"),
        ("x" * 129, 400, "longer"),
        ("x" * 200, 400, "The counter name is longer than 128 characters"),
        (" ", 400, "The counter name must not begin or end with a space"),
        (" visits", 400, "must not begin or end with a space"),
        ("visits ", 400, "must not begin or end with a space"),
        ("visits\u3000", 400, "must not begin or end with a space"),
        ("\u200b", 400, "The counter name must have a visible character"),
    ],
)
async def test_create_refuses_bad_names(
    harness: Harness, make_browser: BrowserFactory, name: str, status: int, message: str
) -> None:
    """A name the API would refuse is refused here, with the reason; nothing is made
    (not even a trimmed or shortened name) and the form shows the name as typed."""
    b, ws = await owner(harness, make_browser)
    r = await b.submit("/w/ann/counters/new", {"name": name, "visibility": "public"})
    assert r.status_code == status
    assert message in text(r)
    assert await harness.store.list_counters(ws.id) == []
    if name.strip():
        assert f'value="{name}"' in r.text


async def test_the_name_field_cuts_nothing(harness: Harness, make_browser: BrowserFactory) -> None:
    """The form's name field has no maxlength: a browser would cut a pasted 200-character
    name to 128 without a word and create a counter of another name; the server's
    message says what is wrong instead."""
    b, _ws = await owner(harness, make_browser)
    form = (await b.get("/w/ann/counters/new")).text
    field = form[form.index('<input id="name"') :].split(">", 1)[0]
    assert "maxlength" not in field, field
    assert "required" in field


async def test_create_refuses_a_taken_name(harness: Harness, make_browser: BrowserFactory) -> None:
    b, ws = await owner(harness, make_browser)
    await harness.counter(ws, "hits")
    r = await b.submit("/w/ann/counters/new", {"name": "hits", "visibility": "public"})
    assert r.status_code == 409
    assert "already exists" in text(r)


async def test_the_list_searches_sorts_and_pages(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """50 counters a page, a search by name in any case, a sort by up count."""
    b, ws = await owner(harness, make_browser)
    for i in range(60):
        await harness.counter(ws, f"page-{i:02d}")
    await harness.counter(ws, "Special")
    token = await harness.token(ws, Permission.WRITE)
    for _ in range(2):
        await harness.get("/v2/ann/page-07/up", token)
    first = await b.get("/w/ann")
    assert "61 counters" in text(first)
    assert first.text.count('<td class="name"><a href="/w/ann/c/') == 50
    assert 'rel="prev"' not in first.text
    after = re.search(r'href="\?([^"]*after=[^"]*)" rel="next"', first.text)
    assert after is not None
    second = await b.get("/w/ann?" + html.unescape(after[1]))
    assert second.text.count('<td class="name"><a href="/w/ann/c/') == 11
    assert 'rel="next"' not in second.text
    before = re.search(r'href="\?([^"]*before=[^"]*)" rel="prev"', second.text)
    assert before is not None
    back = await b.get("/w/ann?" + html.unescape(before[1]))
    assert back.text.count('<td class="name"><a href="/w/ann/c/') == 50
    assert 'rel="prev"' not in back.text
    found = await b.get("/w/ann?q=SPECIAL")
    assert "1 counter matching" in text(found)
    assert ">Special</a>" in found.text
    top = await b.get("/w/ann?sort=up&dir=desc")
    assert top.text.index(">page-07</a>") < top.text.index(">Special</a>")  # ties: newest first
    odd = await b.get("/w/ann?sort=nonsense&page=x&after=%%%")
    assert odd.status_code == 200
    assert odd.text.count('<td class="name"><a href="/w/ann/c/') == 50


async def test_counter_page_counts_and_chart_data(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """The counter page, its live counts fragment and its chart data include the API's ups."""
    b, ws = await owner(harness, make_browser)
    counter = await harness.counter(ws, "hits")
    token = await harness.token(ws, Permission.WRITE)
    for _ in range(3):
        await harness.get("/v2/ann/hits/up", token)
    await harness.get("/v2/ann/hits/down", token)
    page = await b.get(f"/w/ann/c/{counter.id}")
    assert page.status_code == 200
    assert '<span class="value" id="up-count">3</span>' in page.text
    assert "curl -H" in page.text
    assert "/v2/ann/hits/up" in page.text
    counts = await b.get(f"/w/ann/c/{counter.id}/counts")
    assert '<span class="value" id="down-count">1</span>' in counts.text
    data = (await b.get(f"/w/ann/c/{counter.id}/data.json")).json()
    assert (data["up_count"], data["down_count"]) == (3, 1)
    # a new counter: the ranges start at its creation, at least 12 hours and 14 days
    assert len(data["hourly"]["up"]) == 12
    assert data["hourly"]["up"][-1] == 3
    assert data["hourly"]["down"][-1] == 1
    assert len(data["daily"]["up"]) == 14
    assert data["daily"]["up"][-1] == 3
    assert data["today"] == {"up": 3, "down": 1}
    assert data["this_week"] == {"up": 3, "down": 1}
    assert '<span class="value" id="today-up">3</span>' in page.text
    assert sum(data["hour_of_day"]["up"]) == 3
    assert sum(data["weekday"]["down"]) == 1


async def test_edit_reset_and_delete(harness: Harness, make_browser: BrowserFactory) -> None:
    """Edit changes description and visibility; reset zeroes; delete needs the typed name
    and takes the history with it."""
    b, ws = await owner(harness, make_browser)
    counter = await harness.counter(ws, "hits")
    token = await harness.token(ws, Permission.WRITE)
    await harness.get("/v2/ann/hits/up", token)
    base = f"/w/ann/c/{counter.id}"
    await b.get(base)
    assert (
        await b.post(base + "/edit", {"description": "new", "visibility": "private"})
    ).status_code == 303
    edited = await harness.store.get_counter_by_id(counter.id)
    assert edited is not None
    assert (edited.description, edited.private) == ("new", True)
    assert (await b.post(base + "/reset")).status_code == 303
    data = (await b.get(base + "/data.json")).json()
    assert (data["up_count"], data["down_count"]) == (0, 0)
    await b.get(base)
    wrong = await b.post(base + "/delete", {"confirm": "nope"})
    assert wrong.status_code == 303
    assert await harness.store.get_counter_by_id(counter.id) is not None
    gone = await b.post(base + "/delete", {"confirm": "hits"})
    assert gone.headers["location"] == "/w/ann"
    assert await harness.store.get_counter_by_id(counter.id) is None
    assert (await harness.store.read_history(counter.id)).buckets == []
    assert (await b.get(base)).status_code == 404


async def test_live_refresh_after_sign_out_redirects_the_page(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """The counts fragment (which the page fetches when its live stream is refused), once
    signed out, asks for a full-page redirect to sign-in (HX-Redirect) instead of
    answering the sign-in form."""
    b, ws = await owner(harness, make_browser)
    counter = await harness.counter(ws, "hits")
    await b.get("/account")
    await b.post("/logout")
    page = f"/w/ann/c/{counter.id}"
    r = await b.get(
        page + "/counts",
        headers={"HX-Request": "true", "HX-Current-URL": f"http://tally.test{page}"},
    )
    assert r.status_code == 204
    assert r.headers["hx-redirect"] == f"/login?next={page}"


async def test_a_counter_named_before_the_rule_can_be_deleted(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """A counter made before names with a space at an end were refused (straight in
    the store here) shows on its page and is deleted by typing its name exactly."""
    b, ws = await owner(harness, make_browser)
    counter = await harness.store.create_counter(ws.id, " old ")
    page = f"/w/ann/c/{counter.id}"
    assert (await b.get(page)).status_code == 200
    r = await b.post(page + "/delete", {"confirm": " old "})
    assert r.status_code == 303
    assert await harness.store.get_counter_by_id(counter.id) is None


async def test_a_short_search_of_a_big_workspace_says_why(
    harness: Harness, make_browser: BrowserFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search under 3 characters in a workspace past SHORT_SEARCH_MAX: a message."""
    b, ws = await owner(harness, make_browser)
    for name in ("ab-1", "ab-2"):
        await harness.counter(ws, name)
    monkeypatch.setattr(counter_lists, "SHORT_SEARCH_MAX", 1)
    r = await b.get("/w/ann?q=ab")
    assert r.status_code == 200
    assert "Search for 3 characters or more" in text(r)
    r = await b.get("/w/ann?q=ab-")
    assert ">ab-2</a>" in r.text
