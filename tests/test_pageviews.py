"""Page views (tally.pageviews, tally.web.pageview): the page-to-counter mapping, the
workspace's opt-in, /count and /count.gif on both backends: allowed origins, the quota,
the creation budget, the rate limit of /up, Do-Not-Track, the unique window, bad input."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib

import httpx
import pytest
from conftest import BrowserFactory, Harness, HarnessFactory
from helpers import assert_error, bearer
from hypothesis import given
from hypothesis import strategies as st
from site_client import text
from sse import OpenStream
from test_site_workspaces import verified

from tally.config import RateLimit, Settings
from tally.errors import BadRequest
from tally.models import CounterChange, Permission
from tally.pageviews import SLASH, page_name, page_path
from tally.web.app import create_app
from tally.web.pageview import GIF
from tally.web.scripts import script

SITE = "https://blog.example"
ALLOWED = {"Origin": SITE}


# the mapping -------------------------------------------------------------------------


def test_the_mapping_by_example() -> None:
    """A path's slashes become U+2215; a query is kept only when it is given; what a
    browser would percent-encode is encoded."""
    assert page_name("/") == SLASH
    assert page_name("/blog/hello/") == "\u2215blog\u2215hello\u2215"
    assert page_name("/a?b=1/2") == "\u2215a?b=1\u22152"
    assert page_name("/a?") == "\u2215a"
    assert page_name("/café menu") == "\u2215caf%C3%A9%20menu"
    assert page_name("/caf%C3%A9") == "\u2215caf%C3%A9"
    assert page_path("\u2215blog\u2215hello\u2215") == "/blog/hello/"
    # a U+2215 typed into a path is percent-encoded, never mistaken for a slash
    assert page_name("/\u2215") == SLASH + "%E2%88%95"
    for bad in ("", "blog/", "/" + "a" * 128):
        with pytest.raises(BadRequest):
            page_name(bad)


# what location.pathname (+ location.search) can hold: printable ASCII but for the
# characters a browser percent-encodes, and percent-escapes
BROWSER_PATH = st.lists(
    st.sampled_from([c for c in map(chr, range(0x21, 0x7F)) if c not in '"#<>`{}?'] + ["%C3%A9"]),
    max_size=40,
).map("".join)


@given(path=BROWSER_PATH, query=st.one_of(st.none(), BROWSER_PATH))
def test_the_mapping_is_reversible(path: str, query: str | None) -> None:
    """Every path a browser sends maps to a name that maps back to it, and two paths
    never share a name."""
    page = "/" + path + ("" if not query else "?" + query.replace("?", ""))
    name = page_name(page)
    assert "/" not in name
    assert page_path(name) == page
    assert page_name(page_path(name)) == name


# the opt-in --------------------------------------------------------------------------


async def opted_in(h: Harness, *, honour_dnt: bool = False) -> str:
    """A workspace `ws` with allowed origins and page counting on; its Admin token."""
    ws = await h.store.get_workspace("ws") or await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    r = await h.client.patch(
        "/v2/ws/-/settings",
        json={"allowed_origins": [SITE], "page_views": True, "honour_dnt": honour_dnt},
        headers=bearer(admin),
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["page_views"] is True
    assert r.json()["data"]["honour_dnt"] is honour_dnt
    return admin


async def names(h: Harness) -> list[str]:
    ws = await h.store.get_workspace("ws")
    assert ws is not None
    return [c.name for c in await h.store.list_counters(ws.id)]


async def value(h: Harness, name: str) -> int | None:
    assert h.app.services is not None
    await h.app.services.writes.flush()
    c = await h.store.read_counter("ws", name)
    return None if c is None else c.up_count


async def test_page_counting_is_opt_in_and_needs_origins(harness: Harness) -> None:
    """Off by default: views are a 403 that creates nothing. Turning it on without
    allowed origins is a 400; then it shows in the settings; clearing the origins while
    it is on is refused too."""
    h = harness
    ws = await h.workspace()
    admin = await h.token(ws, Permission.ADMIN)
    r = await h.client.get("/v2/ws/-/settings", headers=bearer(admin))
    assert (r.json()["data"]["page_views"], r.json()["data"]["honour_dnt"]) == (False, False)
    assert_error(await h.client.post("/count?workspace=ws&page=/a", headers=ALLOWED), 403)
    assert_error(await h.client.post("/count?workspace=nope&page=/a", headers=ALLOWED), 403)
    assert_error(await h.client.get("/v2/ws/new/up", headers=ALLOWED), 404)
    r = await h.client.patch("/v2/ws/-/settings", json={"page_views": True}, headers=bearer(admin))
    assert_error(r, 400)
    assert "allowed origins" in r.json()["message"]
    for bad in ({"page_views": "yes"}, {"honour_dnt": 1}):
        assert_error(
            await h.client.patch("/v2/ws/-/settings", json=bad, headers=bearer(admin)), 400
        )
    await opted_in(h)
    r = await h.client.patch(
        "/v2/ws/-/settings", json={"allowed_origins": []}, headers=bearer(admin)
    )
    assert_error(r, 400)
    assert await value(h, "\u2215a") is None
    r = await h.client.patch("/v2/ws/-/settings", json={"page_views": False}, headers=bearer(admin))
    assert r.json()["data"]["page_views"] is False


# the endpoints -----------------------------------------------------------------------


async def test_a_view_counts_and_creates_its_page_counter(harness: Harness) -> None:
    """/count (POST and GET) and /count.gif count a view in the page's counter, created
    at the first; an anonymous up from an allowed origin creates one as well; the
    counter is an ordinary public counter of the API."""
    h = harness
    await opted_in(h)
    r = await h.client.post("/count?workspace=ws&page=/blog/hello/", headers=ALLOWED)
    assert r.status_code == 204, r.text
    assert r.headers["cache-control"] == "no-store"
    assert (
        await h.client.get("/count?workspace=ws&page=/blog/hello/", headers=ALLOWED)
    ).status_code == 204
    assert await value(h, "\u2215blog\u2215hello\u2215") == 2
    # the image: checked by its Referer (a cross-origin <img> sends no Origin)
    r = await h.client.get(
        "/count.gif?workspace=ws&page=/blog/hello/", headers={"Referer": f"{SITE}/blog/hello/"}
    )
    assert r.status_code == 200
    assert r.content == GIF
    assert r.headers["content-type"] == "image/gif"
    assert r.headers["cache-control"] == "no-store"
    assert await value(h, "\u2215blog\u2215hello\u2215") == 3
    # percent-escapes stay in the name, as the mapping says (decoded once, as a query)
    r = await h.client.post("/count?workspace=ws&page=%2Fcaf%25C3%25A9", headers=ALLOWED)
    assert r.status_code == 204
    assert await value(h, "\u2215caf%C3%A9") == 1
    r = await h.client.post("/count?workspace=ws&page=/caf%C3%A9", headers=ALLOWED)
    assert r.status_code == 204  # typed by hand, not encoded: encoded as a browser would
    assert await value(h, "\u2215caf%C3%A9") == 2
    r = await h.client.post("/count?workspace=ws&counter=100%25", headers=ALLOWED)
    assert r.status_code == 204
    assert await value(h, "100%") == 1
    # data-counter: the name as given
    assert (
        await h.client.post("/count?workspace=ws&counter=visits", headers=ALLOWED)
    ).status_code == 204
    assert await value(h, "visits") == 1
    r = await h.client.get("/v2/ws/%E2%88%95blog%E2%88%95hello%E2%88%95")
    assert r.json()["data"]["value"] == 3
    r = await h.client.get("/v2/ws/from-up/up", headers=ALLOWED)
    assert r.status_code == 200
    assert r.json()["data"]["value"] == 1
    # an anonymous down or up by more than 1 creates nothing
    assert_error(await h.client.get("/v2/ws/d/down", headers=ALLOWED), 404)
    assert_error(await h.client.get("/v2/ws/d/up?by=2", headers=ALLOWED), 404)


async def test_a_view_reaches_the_live_stream(harness: Harness) -> None:
    """A view is a change like an up: an open stream of the page's counter sends it."""
    h = harness
    await opted_in(h)
    assert (await h.client.post("/count?workspace=ws&page=/a", headers=ALLOWED)).status_code == 204
    stream = await OpenStream(h.app, "/v2/ws/%E2%88%95a/stream").open()
    try:
        assert (await stream.next_data())["value"] == 1
        assert (
            await h.client.post("/count?workspace=ws&page=/a", headers=ALLOWED)
        ).status_code == 204
        assert (await stream.next_data())["value"] == 2
    finally:
        stream.drop()
        await stream.closed()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="none"),
        pytest.param({"Origin": "https://evil.example"}, id="other-origin"),
        pytest.param({"Origin": "null"}, id="null"),
        pytest.param({"Referer": "https://evil.example/"}, id="other-referer"),
    ],
)
async def test_a_view_from_elsewhere_is_refused(harness: Harness, headers: dict[str, str]) -> None:
    """Not from an allowed origin: the 403 JSON error, for /count, /count.gif and /up;
    nothing is created, and an existing page counter is not counted either."""
    h = harness
    await opted_in(h)
    for path in ("/count?workspace=ws&page=/a", "/count.gif?workspace=ws&page=/a"):
        r = await h.client.get(path, headers=headers)
        assert_error(r, 403)
        assert r.headers["cache-control"] == "no-store"
    assert_error(await h.client.get("/v2/ws/%E2%88%95a/up", headers=headers), 403)
    assert await value(h, "\u2215a") is None
    assert (await h.client.post("/count?workspace=ws&page=/a", headers=ALLOWED)).status_code == 204
    assert_error(await h.client.post("/count?workspace=ws&page=/a", headers=headers), 403)
    assert await value(h, "\u2215a") == 1


async def test_a_private_counter_is_not_counted_nor_revealed(harness: Harness) -> None:
    """A view of a private counter's name: the 404 of a missing counter, uncounted."""
    h = harness
    await opted_in(h)
    ws = await h.store.get_workspace("ws")
    assert ws is not None
    await h.counter(ws, "secret", private=True)
    assert_error(await h.client.post("/count?workspace=ws&counter=secret", headers=ALLOWED), 404)
    assert await value(h, "secret") == 0


async def test_the_quota_and_the_creation_budget_hold(make_harness: HarnessFactory) -> None:
    """New pages stop at the workspace's quota (403) and at the client's budget of new
    counters (429, Retry-After); views of existing pages go on counting."""
    h = await make_harness(create_rate_limit=RateLimit(3, 3600.0))
    admin = await opted_in(h)
    r = await h.client.patch("/v2/ws/-/settings", json={"counter_quota": 2}, headers=bearer(admin))
    assert r.status_code == 200
    for page in ("/a", "/b"):
        assert (
            await h.client.post(f"/count?workspace=ws&page={page}", headers=ALLOWED)
        ).status_code == 204
    r = await h.client.post("/count?workspace=ws&page=/c", headers=ALLOWED)
    assert_error(r, 403)
    assert "quota" in r.json()["message"]
    await h.client.patch("/v2/ws/-/settings", json={"counter_quota": None}, headers=bearer(admin))
    # the quota's refusal spent a creation: 3 spent (a, b, c), so d is the 4th
    r = await h.client.post("/count?workspace=ws&page=/d", headers=ALLOWED)
    assert_error(r, 429)
    assert int(r.headers["retry-after"]) >= 1
    assert await value(h, "\u2215c") is None
    assert await value(h, "\u2215d") is None
    assert (await h.client.post("/count?workspace=ws&page=/a", headers=ALLOWED)).status_code == 204
    assert await value(h, "\u2215a") == 2


async def test_a_flood_of_new_pages_creates_only_the_budget(make_harness: HarnessFactory) -> None:
    """200 concurrent views of 200 new pages from one client: exactly the budget (5)
    created, the rest 429, no other answer."""
    h = await make_harness(create_rate_limit=RateLimit(5, 3600.0))
    await opted_in(h)
    answers = await asyncio.gather(
        *(h.client.post(f"/count?workspace=ws&page=/p{i}", headers=ALLOWED) for i in range(200))
    )
    statuses = sorted(r.status_code for r in answers)
    assert (statuses.count(204), statuses.count(429)) == (5, 195), set(statuses)
    assert len(await names(h)) == 5


async def test_views_share_the_rate_limit_of_up(make_harness: HarnessFactory) -> None:
    """A page's views spend its counter's /up budget per client: no way around it."""
    h = await make_harness(rate_limit=RateLimit(3, 60.0))
    await opted_in(h)
    for _ in range(2):
        assert (
            await h.client.post("/count?workspace=ws&page=/a", headers=ALLOWED)
        ).status_code == 204
    assert (await h.client.get("/v2/ws/%E2%88%95a/up", headers=ALLOWED)).status_code == 200
    assert_error(await h.client.post("/count?workspace=ws&page=/a", headers=ALLOWED), 429)
    assert_error(await h.client.get("/count.gif?workspace=ws&page=/a", headers=ALLOWED), 429)
    assert await value(h, "\u2215a") == 3


@pytest.mark.parametrize("signal", [{"DNT": "1"}, {"Sec-GPC": "1"}], ids=["dnt", "gpc"])
async def test_do_not_track_is_honoured_when_asked(
    harness: Harness, signal: dict[str, str]
) -> None:
    """With honour_dnt, a view that says DNT / GPC is answered as usual but not counted
    (nor creates its counter); without it, it counts."""
    h = harness
    admin = await opted_in(h, honour_dnt=True)
    assert (
        await h.client.post("/count?workspace=ws&page=/a", headers={**ALLOWED, **signal})
    ).status_code == 204
    assert await value(h, "\u2215a") is None
    assert (
        await h.client.post("/count?workspace=ws&page=/a", headers={**ALLOWED, "DNT": "0"})
    ).status_code == 204
    assert await value(h, "\u2215a") == 1
    await h.client.patch("/v2/ws/-/settings", json={"honour_dnt": False}, headers=bearer(admin))
    assert (
        await h.client.post("/count?workspace=ws&page=/a", headers={**ALLOWED, **signal})
    ).status_code == 204
    assert await value(h, "\u2215a") == 2


async def test_the_unique_window_applies(harness: Harness) -> None:
    """A page counter with a unique window counts one visitor once within it."""
    h = harness
    await opted_in(h)
    assert (await h.client.post("/count?workspace=ws&page=/a", headers=ALLOWED)).status_code == 204
    c = await h.store.read_counter("ws", "\u2215a")
    assert c is not None
    await h.store.change_counter(c.id, CounterChange(unique_window=3600))
    assert h.app.services is not None
    h.app.services.counters.cache.forget(("ws", "\u2215a"))
    for agent in ("first", "first", "second"):
        r = await h.client.post(
            "/count?workspace=ws&page=/a", headers={**ALLOWED, "User-Agent": agent}
        )
        assert r.status_code == 204
    assert await value(h, "\u2215a") == 3


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/count", 400),
        ("POST", "/count?page=/a", 400),
        ("POST", "/count?workspace=ws", 400),
        ("POST", "/count?workspace=ws&page=/a&counter=b", 400),
        ("POST", "/count?workspace=ws&page=/a&page=/b", 400),
        ("POST", "/count?workspace=ws&page=a", 400),
        ("POST", "/count?workspace=ws&page=/" + "x" * 200, 400),
        ("POST", "/count?workspace=ws&counter=", 400),
        ("POST", "/count?workspace=ws&counter=%00", 400),
        ("POST", "/count?workspace=ws&page=%ff", 400),
        ("PUT", "/count?workspace=ws&page=/a", 405),
        ("POST", "/count.gif?workspace=ws&page=/a", 405),
    ],
)
async def test_bad_views_are_refused_and_change_nothing(
    harness: Harness, method: str, path: str, status: int
) -> None:
    h = harness
    await opted_in(h)
    assert_error(await h.client.request(method, path, headers=ALLOWED), status)
    assert await names(h) == []


# the script ---------------------------------------------------------------------------


@pytest.fixture
async def scripts(tmp_path: object) -> httpx.AsyncClient:
    """The app's routes without its services: the scripts need none."""
    app = create_app(Settings(database_url="sqlite:///unused.db"))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.mark.parametrize("name", ["count.js", "widget.js"])
async def test_the_scripts_are_small_cached_and_pinnable(
    scripts: httpx.AsyncClient, name: str
) -> None:
    """count.js is at most 2 KB gzipped; both are cached a day at their plain URL and a
    year at the versioned one, whose bytes match an SRI hash; another version is a 404."""
    r = await scripts.get(f"/{name}", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cache-control"] == "public, max-age=86400"
    assert r.headers["access-control-allow-origin"] == "*"
    body = r.content
    gzipped = len(gzip.compress(body, 9))
    if name == "count.js":
        assert gzipped <= 2048, f"count.js is {gzipped} bytes gzipped"
    zipped = await scripts.get(f"/{name}", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == body
    version = hashlib.sha256(body).hexdigest()[:16]
    pinned = await scripts.get(f"/{name}?v={version}")
    assert pinned.content == body
    assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
    from tally.web.scripts import script

    assert (
        script(name).integrity
        == "sha384-" + base64.b64encode(hashlib.sha384(pinned.content).digest()).decode()
    )
    assert_error(await scripts.get(f"/{name}?v=0000"), 404)
    tag = r.headers["etag"]
    assert (await scripts.get(f"/{name}", headers={"If-None-Match": tag})).status_code == 304
    assert_error(await scripts.post(f"/{name}"), 405)


# the dashboard -----------------------------------------------------------------------


async def test_the_settings_page_turns_page_counting_on(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """An owner turns page counting on (refused, changing nothing, while the workspace
    has no allowed origins) and off; the page shows the pinned snippets."""
    h = harness
    b = await verified(h, make_browser, "ann@example.com")
    ws = await h.store.get_workspace("ann")
    assert ws is not None
    page = await b.get("/w/ann/settings")
    count = script("count.js")
    assert f"{count.versioned}" in page.text
    assert count.integrity in page.text
    assert script("widget.js").integrity in page.text
    r = await b.post("/w/ann/settings/pages", {"pages": "on", "dnt": "on"})
    assert r.status_code == 400
    assert "allowed origins" in text(r)
    assert (await h.store.get_workspace("ann")) == ws
    await b.post("/w/ann/settings/rules", {"origins": SITE})
    r = await b.post("/w/ann/settings/pages", {"pages": "on", "dnt": "on"})
    assert r.status_code == 303
    changed = await h.store.get_workspace("ann")
    assert changed is not None
    assert (changed.page_views, changed.honour_dnt) == (True, True)
    assert (await b.post("/w/ann/settings/pages", {})).status_code == 303
    changed = await h.store.get_workspace("ann")
    assert changed is not None
    assert (changed.page_views, changed.honour_dnt) == (False, False)
