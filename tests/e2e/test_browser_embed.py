"""/count.js and /widget.js in a real browser (Debian's chromium through Playwright),
included by pages of ANOTHER origin on loopback (a tiny http.server on its own port)
than the real `tally serve` they talk to, on SQLite and on PostgreSQL + Redis.

- count.js, pinned by its versioned URL and SRI `integrity`: a page load counts the
  page, a real navigation (a link) counts the next one, `history.pushState` counts the
  new path (a `replaceState` of the same path does not count again), and the same page
  served from an origin the workspace does not allow counts nothing (its view is
  refused: 403) and creates no counter.
- widget.js: `<tally-counter>` shows a public counter's value, follows an `up` live over
  the stream, falls back to polling when the stream is refused, and shows an error (never
  the value) for a private counter.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from services import require_redis

from tally.web.scripts import script

from .server import HOST, TallyCli, TallyServer, sqlite_url
from .test_browser import ARGS, TIMEOUT_MS, chromium  # noqa: F401  (the fixture)

SLASH = "\u2215"


class PageServer:
    """Serves `html(path)` for every GET path (as a single-page app's server does), on
    its own port of 127.0.0.1: an origin other than Tally's."""

    def __init__(self, html: Callable[[str], str]) -> None:
        page = html

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = page(self.path).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.origin = f"http://{HOST}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql+redis", marks=pytest.mark.postgres)])
def tally(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TallyServer, str]]:
    """A real `tally serve` (the rate limit off) and an Admin token of its workspace
    `blog`."""
    env = {"TALLY_RATE_LIMIT": "off"}
    prefix = f"tally-test-{secrets.token_hex(6)}:"
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "t.db")
    else:  # a schema and a Redis key prefix of the test's own
        url = str(request.getfixturevalue("postgres_url"))
        env |= {"TALLY_REDIS_URL": require_redis(), "TALLY_REDIS_PREFIX": prefix}
    cli = TallyCli(url, env=env)
    cli.workspace("blog")
    admin = cli.token("blog", "admin")
    workdir = tmp_path / "server"
    workdir.mkdir()
    server = TallyServer(workdir, database_url=url, env=env)
    server.start()
    try:
        yield server, admin
    finally:
        server.close()
        if request.param != "sqlite":
            client = redis.Redis.from_url(require_redis())
            for key in client.scan_iter(match=f"{prefix}*"):
                client.delete(key)
            client.close()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:  # noqa: F811  (the fixture above)
    """One headless chromium for the module; each test takes a context of its own."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, errors


def value(base: str, name: str) -> int | None:
    """The counter's value through the API (None: 404)."""
    r = httpx.get(f"{base}/v2/blog/{name}", trust_env=False)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return int(r.json()["data"]["value"])


def eventually(check: Callable[[], object], expected: object, seconds: float = 10.0) -> None:
    """Poll `check()` until it returns `expected` (a deadline, no fixed sleep)."""
    deadline = time.monotonic() + seconds
    while (got := check()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {expected!r}, still {got!r}")
        time.sleep(0.05)


def tag(base: str, name: str, attributes: str) -> str:
    """A <script> of the versioned, SRI-pinned script."""
    s = script(name)
    return (
        f'<script async src="{base}{s.versioned}" integrity="{s.integrity}" '
        f'crossorigin="anonymous" {attributes}></script>'
    )


@pytest.mark.timeout(300)
def test_count_js_counts_pages_from_an_allowed_origin_only(
    tally: tuple[TallyServer, str], page: Any
) -> None:
    server, admin = tally
    base = server.base_url

    def html(path: str) -> str:
        return (
            f"<!doctype html><title>{path}</title>"
            + tag(base, "count.js", 'data-workspace="blog"')
            + '<a id="next" href="/blog/second/">next</a>'
        )

    allowed, blocked = PageServer(html), PageServer(html)
    try:
        assert base not in (allowed.origin, blocked.origin)
        r = httpx.patch(
            f"{base}/v2/blog/-/settings",
            json={"allowed_origins": [allowed.origin], "page_views": True},
            headers={"Authorization": f"Bearer {admin}"},
            trust_env=False,
        )
        assert r.status_code == 200, r.text

        # a page load, then a real navigation
        with page.expect_response(lambda r: "/count?" in r.url) as first:
            page.goto(allowed.origin + "/blog/first/")
        assert first.value.status == 204
        eventually(lambda: value(base, f"{SLASH}blog{SLASH}first{SLASH}"), 1)
        with page.expect_response(lambda r: "/count?" in r.url) as second:
            page.click("#next")
        assert second.value.status == 204
        eventually(lambda: value(base, f"{SLASH}blog{SLASH}second{SLASH}"), 1)

        # a single-page app's navigation: pushState counts the new path, once
        with page.expect_response(lambda r: "/count?" in r.url) as pushed:
            page.evaluate("history.pushState({}, '', '/app/route?tab=2')")
        assert pushed.value.status == 204
        page.evaluate("history.replaceState({x: 1}, '', '/app/route?tab=3')")  # same path
        eventually(lambda: value(base, f"{SLASH}app{SLASH}route"), 1)
        with page.expect_response(lambda r: "/count?" in r.url) as back:
            page.go_back()  # popstate: back on /blog/second/
        assert back.value.status == 204
        eventually(lambda: value(base, f"{SLASH}blog{SLASH}second{SLASH}"), 2)
        assert value(base, f"{SLASH}app{SLASH}route") == 1

        # a path the browser percent-encodes: the name keeps its escapes, as the mapping
        # (in Python, on the server) says
        with page.expect_response(lambda r: "/count?" in r.url) as encoded:
            page.goto(allowed.origin + "/café au lait/")
        assert encoded.value.status == 204
        eventually(lambda: value(base, f"{SLASH}caf%25C3%25A9%2520au%2520lait{SLASH}"), 1)

        # the same page from an origin the workspace does not allow: refused, uncounted
        with page.expect_response(lambda r: "/count?" in r.url) as refused:
            page.goto(blocked.origin + "/blog/first/")
        assert refused.value.status == 403
        with page.expect_response(lambda r: "/count?" in r.url) as refused:
            page.goto(blocked.origin + "/elsewhere/")
        assert refused.value.status == 403
        assert value(base, f"{SLASH}blog{SLASH}first{SLASH}") == 1
        assert value(base, f"{SLASH}elsewhere{SLASH}") is None
    finally:
        allowed.close()
        blocked.close()


@pytest.mark.timeout(300)
def test_the_widget_follows_a_public_counter_live_and_hides_a_private_one(
    tally: tuple[TallyServer, str], page: Any
) -> None:
    server, admin = tally
    base = server.base_url
    auth = {"Authorization": f"Bearer {admin}"}
    for name, private in (("visits", False), ("secret", True)):
        r = httpx.post(
            f"{base}/v2/blog/-/counters",
            json={"name": name, "visibility": "private" if private else "public"},
            headers=auth,
            trust_env=False,
        )
        assert r.status_code == 201, r.text
        assert httpx.get(f"{base}/v2/blog/{name}/up?by=1234", headers=auth).status_code == 200

    def html(path: str) -> str:
        return (
            "<!doctype html><title>widget</title>"
            + tag(base, "widget.js", "")
            + '<tally-counter id="pub" workspace="blog" name="visits"></tally-counter>'
            + '<tally-counter id="priv" workspace="blog" name="secret"></tally-counter>'
        )

    pages = PageServer(html)
    try:
        page.goto(pages.origin + "/")
        pub, priv = page.locator("#pub"), page.locator("#priv")
        from playwright.sync_api import expect

        expect(pub).to_have_attribute("state", "live")
        expect(pub).to_have_attribute("value", "1234")
        expect(pub).to_contain_text("1,234")
        assert httpx.get(f"{base}/v2/blog/visits/up", trust_env=False).status_code == 200
        expect(pub).to_have_attribute("value", "1235")  # over the stream, no reload
        expect(pub).to_have_attribute("state", "live")
        expect(priv).to_have_attribute("state", "error")
        expect(priv).to_contain_text("not found")
        assert priv.get_attribute("value") is None
        assert "1,234" not in priv.inner_text()
        # themeable: a custom property reaches the value's background
        page.evaluate(
            "document.querySelector('#pub').style.setProperty('--tally-background', 'rgb(1, 2, 3)')"
        )
        background = page.evaluate(
            "getComputedStyle(document.querySelector('#pub').shadowRoot.querySelector('.v'))"
            ".backgroundColor"
        )
        assert background == "rgb(1, 2, 3)"

        # a refused stream (as by a proxy that does not pass them): polling instead
        page.route("**/stream", lambda route: route.fulfill(status=503, body="no"))
        page.reload()
        expect(pub).to_have_attribute("state", "polling")
        expect(pub).to_have_attribute("value", "1235")
        expect(priv).to_have_attribute("state", "error")
    finally:
        pages.close()
