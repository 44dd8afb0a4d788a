"""The dashboard in a real browser: Playwright driving Debian's chromium against a real
`tally serve`, on SQLite and on PostgreSQL.

The journey: sign up, confirm the email (the link from the server log: no SMTP), create
a workspace, create a Write token and copy it from the page, create a counter, count
`up` three times through the HTTP API with that token while its page is open, see the
page's counts follow live (its stream, opened again after a refused and a dropped
one) and its chart data, revoke the token, and see the API answer 401.

Chromium comes from Debian (`/usr/bin/chromium`); when it is missing and the tests run
as root (as in CI) the fixture installs it with apt-get, else the tests skip with the
reason (never under CI=true: then they fail).

Screenshots: with `TALLY_SCREENSHOTS=1` the SQLite run saves the main pages into
docs/screenshots/ (the README and docs/dashboard.md show them): sign-up, an empty
workspace, the tokens page empty and with a new token, a counter page, the counters
list, the workspace settings, and the counters list and a counter page in a narrow
(390 px, phone) window. Without it nothing is written, so an ordinary run leaves the
working tree clean:

    TALLY_SCREENSHOTS=1 .venv/bin/python -m pytest tests/e2e/test_browser.py -k sqlite
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tools import apt

from .server import TallyServer

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
VERIFY_RE = re.compile(r"http://127\.0\.0\.1:\d+/verify/[A-Za-z0-9_-]+")
TOKEN_RE = re.compile(r"^tly_[A-Za-z0-9]{38}$")
TIMEOUT_MS = 20_000
EMAIL, PASSWORD = "ada@example.com", "an excellent passphrase"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Debian's chromium, installed with apt-get if missing (as root)."""
    if not Path(CHROMIUM).exists():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            _unavailable(f"{CHROMIUM} is missing; install Debian's chromium (apt-get)")
        apt.install("chromium", quiet=True)
        if not Path(CHROMIUM).exists():
            _unavailable("apt-get install -y chromium did not install /usr/bin/chromium")
    return CHROMIUM


@pytest.fixture
def browser_page(chromium: str) -> Iterator[Any]:
    """A fresh Playwright page in headless chromium, allowed to use the clipboard."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        try:
            yield page
        finally:
            context.close()
            browser.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TallyServer]:
    """A real `tally serve` on SQLite or on PostgreSQL (a schema of the test's own)."""
    url = None
    if request.param == "postgresql":
        url = str(request.getfixturevalue("postgres_url"))
    workdir = tmp_path / "server"
    workdir.mkdir()
    s = TallyServer(workdir, database_url=url, env={"TALLY_RATE_LIMIT": "off"})
    s.start()
    try:
        yield s
    finally:
        s.close()


def _verification_link(server: TallyServer) -> str:
    """The confirmation link the server wrote to its log (no SMTP is set)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        links = VERIFY_RE.findall(server.stderr() + server.stdout())
        if links:
            return str(links[-1])
        time.sleep(0.1)
    raise AssertionError(f"no verification link in the server log\n{server.output()}")


def _shot(page: Any, name: str, save: bool) -> None:
    if save:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _screenshots_wanted(request: pytest.FixtureRequest) -> bool:
    """TALLY_SCREENSHOTS=1 asks for them; one backend's run is enough."""
    return os.environ.get("TALLY_SCREENSHOTS") == "1" and "sqlite" in request.node.callspec.id


@pytest.mark.timeout(1200)  # the first one may install chromium (apt-get) first
def test_journey_sign_up_to_counting_and_revoking(
    server: TallyServer, browser_page: Any, request: pytest.FixtureRequest
) -> None:
    """Sign up, confirm, make a workspace, a Write token (copied from the page) and a
    counter; 3 ups through the API show on the counter page and in its chart data;
    the revoked token gets 401."""
    from playwright.sync_api import expect

    page, base = browser_page, server.base_url
    tabs = page.get_by_role("navigation", name="Workspace")  # the workspace's pages
    save = _screenshots_wanted(request)
    problems: list[str] = []  # CSP violations and script errors the page reports
    page.on(
        "console",
        lambda m: problems.append(f"{m.text} {m.location}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: problems.append(str(e)))

    # sign up
    page.goto(base + "/")
    # a new instance opens on its first account, which will own `default`
    expect(page).to_have_url(re.compile(r"/signup$"))
    expect(page.get_by_role("heading", name="Create the first account")).to_be_visible()
    expect(page.locator("#first-account")).to_contain_text("default")
    _shot(page, "signup", save)
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    # the instance's first account is signed in at once, where the Quick start counted
    # (any other sign-up signs nobody in: its page reads the same whether the address
    # was free or taken)
    expect(page).to_have_url(base + "/w/default")
    expect(page.get_by_text(f"Welcome: {EMAIL} owns the workspace default.")).to_be_visible()

    # confirm the email (no SMTP set: the link is in the server's log)
    page.goto(_verification_link(server))
    expect(page.get_by_text(f"{EMAIL} is confirmed")).to_be_visible()
    expect(page).to_have_url(base + "/w/default")

    # a workspace
    page.goto(base + "/workspaces/new")
    page.get_by_label("Slug").fill("shop")
    page.get_by_label("Display name").fill("The shop")
    page.get_by_role("button", name="Create workspace").click()
    expect(page).to_have_url(base + "/w/shop")
    expect(page.locator("#no-counters")).to_be_visible()
    _shot(page, "counters-empty", save)

    # a Write token, copied from the page
    tabs.get_by_role("link", name="Tokens").click()
    expect(page.locator("#no-tokens")).to_be_visible()
    _shot(page, "tokens-empty", save)
    page.get_by_label("Name").fill("website")
    page.get_by_label("Permission").select_option("write")
    page.get_by_role("button", name="Create token").click()
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    token = page.evaluate("navigator.clipboard.readText()")
    assert TOKEN_RE.match(token), token
    assert token == page.locator("#new-token").inner_text().strip()
    _shot(page, "tokens", save)

    # a counter. Its page's first live stream is refused (503), as by a server that is
    # restarting: the page fetches the counts and opens the stream again by itself; the
    # second is dropped after its first line, as by a proxy: the browser reconnects
    attempts: list[str] = []
    fetched: list[str] = []  # the counts fragment, fetched after a refusal only
    page.on("request", lambda r: fetched.append(r.url) if r.url.endswith("/counts") else None)

    def refuse_then_drop(route: Any) -> None:
        attempts.append(route.request.url)
        if len(attempts) == 1:
            route.fulfill(status=503, content_type="text/plain", body="restarting")
        elif len(attempts) == 2:
            route.fulfill(status=200, content_type="text/event-stream", body="retry: 300\n\n")
        else:
            route.continue_()

    page.route(re.compile(r"/c/\d+/stream$"), refuse_then_drop)
    tabs.get_by_role("link", name="Overview").click()
    page.get_by_role("link", name="New counter").click()
    page.get_by_label("Name").fill("visits")
    page.get_by_label("Description").fill("Visits of the home page")
    page.get_by_role("button", name="Create counter").click()
    expect(page.locator("#up-count")).to_have_text("0")
    expect(page.locator("#counts")).to_have_attribute("data-live", "open")  # streaming
    assert len(attempts) == 3, attempts
    assert len(fetched) == 1, fetched  # after the refusal; the drop: EventSource itself
    counter_url = page.url

    # three ups through the HTTP API with the copied token
    with httpx.Client(base_url=base, trust_env=False, timeout=10) as api:
        auth = {"Authorization": f"Bearer {token}"}
        for expected in (1, 2, 3):
            r = api.get("/v2/shop/visits/up", headers=auth)
            assert r.status_code == 200, r.text
            assert r.json()["data"]["up_count"] == expected
        for name, ups in (("downloads", 2), ("signups", 1)):
            for _ in range(ups):
                assert api.get(f"/v2/shop/{name}/up", headers=auth).status_code == 200

        # the open page shows them live, from its stream, and the chart data has them
        expect(page.locator("#up-count")).to_have_text("3", timeout=TIMEOUT_MS)
        expect(page.locator("#value-count")).to_have_text("3")
        data = page.evaluate("async (url) => (await fetch(url)).json()", counter_url + "/data.json")
        assert data["up_count"] == 3
        assert data["hourly"]["up"][-1] == 3
        assert sum(data["daily"]["up"]) == 3
        expect(page.locator("#charts")).to_have_attribute("data-loaded", "3")
        page.reload()  # (without the one-time notice)
        expect(page.locator("#charts")).to_have_attribute("data-loaded", "3")
        _shot(page, "counter", save)
        tabs.get_by_role("link", name="Overview").click()
        expect(page.get_by_text("3 counters")).to_be_visible()
        _shot(page, "counters", save)
        if save:
            tabs.get_by_role("link", name="Settings").click()
            _shot(page, "settings", save)
            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            tabs.get_by_role("link", name="Overview").click()
            _shot(page, "mobile-counters", save)
            page.goto(counter_url)
            expect(page.locator("#charts")).to_have_attribute("data-loaded", "3")
            _shot(page, "mobile-counter", save)
            page.set_viewport_size({"width": 1200, "height": 900})

        # revoke: the API refuses the token (within the 1 s token cache)
        tabs.get_by_role("link", name="Tokens").click()
        page.once("dialog", lambda dialog: dialog.accept())  # "Revoke the token website?"
        page.get_by_role("button", name="Revoke token website").click()
        expect(page.get_by_text("is revoked")).to_be_visible()
        deadline = time.monotonic() + 10
        status = 0
        while time.monotonic() < deadline:
            status = api.get("/v2/shop/visits/up", headers=auth).status_code
            if status == 401:
                break
            time.sleep(0.2)
        assert status == 401
    # (the browser reports the refused stream too: that one was on purpose)
    problems = [p for p in problems if not ("status of 503" in p and "/stream" in p)]
    assert problems == [], problems
