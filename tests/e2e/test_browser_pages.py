"""Every page of the dashboard as a person sees it, in Debian's chromium (Playwright), at
a laptop's width (1280x800) and a phone's (390x844): nothing scrolls sideways, however
long a name; the charts fit a new counter's data and show today and this week; the API
page loads nothing from elsewhere and leads back to the dashboard.

One server (SQLite: the layout does not depend on the store) and one browser serve the
whole module; each test opens its own context, signed in as the owner of `default`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .server import TallyCli, TallyServer
from .test_browser import ARGS, TIMEOUT_MS, chromium  # noqa: F401  (the fixture)

EMAIL, PASSWORD = "ada@example.com", "an excellent passphrase"
LONG = "AVeryLongCounterNameWithNoSpaceOrHyphen" * 3 + "x" * 11  # 128, nowhere to break
WIDTHS = {"laptop": (1280, 800), "phone": (390, 844)}
# TALLY_PAGE_SHOTS=DIR: save every page this module visits, at each width, into DIR (to
# look at them; docs/screenshots/ is written by test_browser.py)
SHOTS = os.environ.get("TALLY_PAGE_SHOTS")


def shot(page: Any, name: str, *, full: bool = True) -> None:
    if SHOTS:
        width = page.viewport_size["width"]
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "home"
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{slug}-{width}.png"), full_page=full)


class World:
    """The server, an Admin token of `default`, and the ids of its counters."""

    def __init__(self, server: TallyServer, cli: TallyCli, token: str) -> None:
        self.server = server
        self.cli = cli
        self.base = server.base_url
        self.token = token
        self.ids: dict[str, int] = {}

    def api(self, path: str) -> httpx.Response:
        with httpx.Client(base_url=self.base, trust_env=False, timeout=10) as client:
            r = client.get(path, headers={"Authorization": f"Bearer {self.token}"})
        assert r.status_code == 200, r.text
        return r


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("pages")
    server = TallyServer(workdir, env={"TALLY_RATE_LIMIT": "off"})
    cli = TallyCli(server.database_url)
    server.start()
    try:
        cli.run("user", "create", EMAIL, "--password", PASSWORD, "--verified")
        w = World(server, cli, cli.token("default", "admin"))
        for name, ups in (("visits", 3), (LONG, 2), ("downloads", 1)):
            for _ in range(ups):
                w.api(f"/v2/default/{name}/up")
        listed = w.api("/v2/default/-/counters").json()["data"]
        w.ids = {c["name"]: c["id"] for c in listed["counters"]}
        yield w
    finally:
        server.close()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:  # noqa: F811  (the fixture above)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def signed_in(
    browser: Any,
    world: World,
    width: int,
    height: int,
    email: str = EMAIL,
    then: str = "/w/default",
) -> Any:
    """A new page of its own context, `width` x `height`, signed in as `email` (the
    owner of `default`), at `then`."""
    then = then or "/w/default"
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{world.base}/login?next={then}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(world.base + then)
    return page


def overflow(page: Any) -> int:
    """How many CSS pixels the page is wider than its window (0: no sideways scroll)."""
    return int(
        page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    )


@pytest.fixture(params=list(WIDTHS))
def page(request: pytest.FixtureRequest, browser: Any, world: World) -> Iterator[Any]:
    width, height = WIDTHS[request.param]
    p = signed_in(browser, world, width, height)
    try:
        yield p
    finally:
        p.context.close()


def test_no_page_scrolls_sideways(page: Any, world: World) -> None:
    """Every page of a workspace, with a 128-character name without spaces among its
    counters, fits the window: names wrap, tables with buttons fit or scroll inside
    themselves (the page never does)."""
    from playwright.sync_api import expect

    base = world.base
    # a token and an invitation, so that their tables have rows with buttons
    page.goto(base + "/w/default/tokens")
    page.locator("#token-name").fill("ATokenNameThatIsRatherLongTooAndUnbroken")
    page.get_by_role("button", name="Create token").click()
    page.goto(base + "/w/default/members")
    page.get_by_label("Email").fill("someone-with-a-long-address@example.com")
    page.get_by_role("button", name=re.compile("Invite")).click()
    # a webhook with a long URL, a rule and a firing whose delivery fails (no network)
    page.goto(base + "/w/default/alerts")
    page.locator("#webhook-url").fill("https://hooks.example.com/" + LONG)
    page.get_by_role("button", name="Add webhook").click()
    page.locator("#rule-threshold").fill("1")
    page.get_by_role("button", name="Add rule").click()
    world.api(f"/v2/default/{LONG[:100]}/up")  # a new counter reaches 1: a firing
    pages = [
        "/w/default",
        "/w/default?period=12m",
        f"/w/default?q={LONG[:20]}",
        f"/w/default/c/{world.ids[LONG]}?period=today",
        f"/w/default/c/{world.ids[LONG]}",
        f"/w/default/c/{world.ids['visits']}",
        "/w/default/counters/new",
        "/w/default/tokens",
        "/w/default/members",
        "/w/default/settings",
        "/w/default/alerts",
        "/w/default/shares",
        "/workspaces/new",
        "/account",
    ]
    wide = {}
    for path in pages:
        page.goto(base + path)
        expect(page.locator("main")).to_be_visible()
        shot(page, path.split("?")[0])
        if overflow(page) > 0:
            wide[path] = overflow(page)
    assert wide == {}, f"pages wider than the window (px): {wide}"


def test_long_name_is_readable_where_it_is_shown(page: Any, world: World) -> None:
    """The long name is shown whole (wrapped), not cut off by the window, on the list
    and among the counters that changed most, and as the counter page's heading."""
    page.goto(world.base + "/w/default")
    for where in ("#movers", "table.counters"):  # the overview shows it twice
        box = page.locator(where).get_by_role("link", name=LONG).bounding_box()
        assert box is not None
        assert box["x"] + box["width"] <= page.viewport_size["width"]
    page.locator("table.counters").get_by_role("link", name=LONG).click()
    heading = page.get_by_role("heading", level=1)
    box = heading.bounding_box()
    assert LONG in heading.inner_text()
    assert box is not None
    assert box["x"] + box["width"] <= page.viewport_size["width"]


def test_charts_fit_a_new_counter(page: Any, world: World) -> None:
    """A counter made minutes ago: its charts start at its creation (bars, not a sliver at
    the right edge), their labels are level and of one format, and today and this week
    show as numbers that follow the counts live."""
    from playwright.sync_api import expect

    ups = world.api("/v2/default/downloads").json()["data"]["up_count"]  # all of today
    page.goto(f"{world.base}/w/default/c/{world.ids['downloads']}")
    expect(page.locator("#charts")).to_have_attribute("data-loaded", str(ups))
    expect(page.locator("#today-up")).to_have_text(str(ups))
    expect(page.locator("#week-up")).to_have_text(str(ups))
    for canvas in ("chart-hourly", "chart-daily", "chart-hour-of-day", "chart-weekday"):
        chart = page.evaluate(
            """(id) => { const c = Chart.getChart(id); return {
                rotation: c.scales.x.labelRotation, bars: c.data.labels.length,
                width: c.getDatasetMeta(0).data[0].width, area: c.chartArea.width } }""",
            canvas,
        )
        assert chart["rotation"] == 0, (canvas, chart)
        # a bar is at least an 80th of the plot (48 hourly pairs of bars made 2 px ones)
        assert chart["width"] >= chart["area"] / 80, (canvas, chart)
    labels = page.evaluate("Chart.getChart('chart-hourly').data.labels")
    assert len(labels) == 12
    assert all(re.fullmatch(r"\d{1,2} [A-Z][a-z]{2} \d\d:00", label) for label in labels)
    shot(page, "counter-new")
    world.api("/v2/default/downloads/up")
    expect(page.locator("#up-count")).to_have_text(str(ups + 1))
    expect(page.locator("#today-up")).to_have_text(str(ups + 1))
    expect(page.locator("#week-up")).to_have_text(str(ups + 1))


def test_api_page_is_self_contained_and_leads_back(page: Any, world: World) -> None:
    """/docs loads nothing from another host and logs no error, describes names in words
    (no raw regular expression), and links back to the dashboard."""
    from playwright.sync_api import expect

    problems: list[str] = []
    elsewhere: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
    local = (world.base, "data:", "blob:")
    page.on("request", lambda r: None if r.url.startswith(local) else elsewhere.append(r.url))
    page.goto(world.base + "/docs")
    # Redoc renders the whole document (50,000 px) first: seconds on a busy machine
    expect(page.get_by_text("1 to 128 characters").first).to_be_attached(timeout=TIMEOUT_MS)
    page.get_by_text("/v2/{workspace}/{name}/up").first.wait_for(state="attached")
    page.wait_for_load_state("networkidle")
    shot(page, "docs", full=False)  # (the whole page is 50,000 px tall)
    text = page.locator("redoc").inner_text()
    assert "(?!" not in text
    assert "\\u0000" not in text
    assert missing == []
    assert problems == []
    assert elsewhere == []
    page.get_by_role("link", name="← Dashboard").click()
    page.wait_for_url(world.base + "/")  # the workspaces of the signed-in account
    expect(page.get_by_role("link", name=re.compile("Default workspace"))).to_be_visible()


def in_view(page: Any, selector: str) -> bool:
    """The element is inside the window, where the person is looking."""
    return bool(
        page.evaluate(
            """(sel) => { const r = document.querySelector(sel).getBoundingClientRect();
                return r.top >= 0 && r.bottom <= window.innerHeight; }""",
            selector,
        )
    )


def test_a_refused_form_says_so_where_you_look(page: Any, world: World) -> None:
    """A refused form comes back at the form: its message in view with role=alert, the
    refused field focused and marked invalid, its values marked "not saved", and a
    summary at the top of the page; nothing was saved."""
    from playwright.sync_api import expect

    base, visits = world.base, world.ids["visits"]
    # the counter's limits: a ceiling below its value
    page.goto(f"{base}/w/default/c/{visits}")
    page.locator("#ceiling").fill("1")
    page.get_by_role("button", name="Save limits").click()
    expect(page.locator("#rules-error")).to_have_attribute("role", "alert")
    assert in_view(page, "#rules-error")
    expect(page.locator("#ceiling")).to_be_focused()
    expect(page.locator("#ceiling")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#ceiling")).to_have_value("1")
    expect(page.locator("label[for=ceiling] .unsaved")).to_contain_text("not saved")
    expect(page.locator("#form-summary a")).to_have_attribute("href", "#rules")
    shot(page, "refused-limits", full=False)
    counter = world.api(f"/v2/default/-/counters/{visits}").json()["data"]
    assert counter["ceiling"] is None
    # the counter's description: too long
    page.goto(f"{base}/w/default/c/{visits}")
    page.locator("#description").fill("d" * 600)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#edit-error")).to_contain_text("600 characters")
    assert in_view(page, "#edit-error")
    expect(page.locator("#description")).to_be_focused()
    expect(page.locator("#description")).to_have_value("d" * 600)
    # the workspace's allowed origins: not an origin
    page.goto(f"{base}/w/default/settings")
    page.locator("#ws-origins").fill("not an origin")
    page.get_by_role("button", name="Save rules").click()
    expect(page.locator("#rules-error")).to_be_visible()
    assert in_view(page, "#rules-error")
    expect(page.locator("#ws-origins")).to_be_focused()
    # the password: the field keeps the focus
    page.goto(f"{base}/account")
    page.locator("#current_password").fill(PASSWORD)
    page.locator("#new_password").fill("1234567890")  # too common
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#form-error")).to_be_visible()
    expect(page.locator("#new_password")).to_be_focused()


def test_destructive_actions_ask_first(page: Any, world: World) -> None:
    """Revoke, remove, leave, cancel an invitation and reset ask for a confirmation, the
    same way everywhere (deletions ask to type the name); saying no changes nothing."""
    from playwright.sync_api import expect

    base = world.base
    page.goto(base + "/w/default/tokens")
    page.locator("#token-name").fill("doomed")
    page.get_by_role("button", name="Create token").click()
    page.goto(base + "/w/default/tokens")
    revoke = page.get_by_role("button", name="Revoke token doomed")
    asked: list[str] = []

    def answer(accept: bool) -> None:
        def handle(dialog: Any) -> None:
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        page.once("dialog", handle)

    answer(False)
    revoke.click()
    assert asked
    assert "doomed" in asked[-1]
    expect(revoke).to_be_visible()  # still there: not revoked
    answer(True)
    revoke.click()
    expect(page.get_by_text("is revoked")).to_be_visible()
    # every destructive button of every page asks (or is a typed deletion)
    unasked = {}
    for path in ("/w/default/tokens", "/w/default/members", f"/w/default/c/{world.ids['visits']}"):
        page.goto(base + path)
        names = page.evaluate(
            """() => [...document.querySelectorAll("form button[type=submit]")]
                .filter((b) => /revoke|remove|leave|cancel|reset/i.test(b.textContent))
                .filter((b) => !b.dataset.confirm).map((b) => b.textContent.trim())"""
        )
        if names:
            unasked[path] = names
    assert unasked == {}


def test_pages_show_only_what_you_may_do(page: Any, browser: Any, world: World) -> None:
    """The sole owner gets no Leave or role control (and is told why); an unconfirmed
    account gets no token form (and one button to send the link again); a viewer's
    counter page does not send them to the Tokens page they may not open."""
    from playwright.sync_api import expect

    base = world.base
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    page.goto(base + "/w/default/members")
    me = page.get_by_role("row").filter(has_text=f"{EMAIL} (you)")
    expect(me.get_by_role("button", name="Leave")).to_have_count(0)
    expect(me.get_by_role("combobox")).to_have_count(0)
    expect(me).to_contain_text("the only owner")

    # an unconfirmed account
    tag = "wide" if width > 800 else "narrow"
    unconfirmed = f"unconfirmed-{tag}@example.com"
    out = world.cli.run("user", "create", unconfirmed, "--password", PASSWORD).stdout
    slug = re.search(r"workspace (\S+)", out)
    assert slug is not None, out
    tokens = f"/w/{slug[1].strip('.,`')}/tokens"
    other = signed_in(browser, world, width, height, unconfirmed, tokens)
    try:
        expect(other.get_by_role("button", name="Create token")).to_have_count(0)
        expect(other.locator("#token-form")).to_contain_text("confirmed accounts")
        other.get_by_role("button", name="Send it again").click()  # one click
        expect(other.get_by_text("We sent a new confirmation link")).to_be_visible()
    finally:
        other.context.close()

    # a viewer, by invitation
    viewer = f"viewer-{tag}@example.com"
    world.cli.run("user", "create", viewer, "--password", PASSWORD, "--verified")
    page.goto(base + "/w/default/members")
    page.locator("#invite-email").fill(viewer)
    page.locator("#invite-role").select_option("viewer")
    page.get_by_role("button", name="Invite").click()
    link = page.locator("#invite-link").inner_text().strip()
    other = signed_in(browser, world, width, height, viewer, link.removeprefix(base))
    try:
        other.get_by_role("button", name="Accept the invitation").click()
        other.wait_for_url(base + "/w/default")
        other.goto(f"{base}/w/default/c/{world.ids['visits']}")
        expect(other.get_by_role("link", name="Tokens")).to_have_count(0)
        expect(other.get_by_text("you are a viewer")).to_be_visible()
    finally:
        other.context.close()


def test_a_new_token_and_invitation_are_made_once_and_shown_once(
    browser: Any, world: World
) -> None:
    """Post/Redirect/Get: creating a token or an invitation ends on a GET of its page, so
    a reload or Back re-posts nothing (before: the POST answered with the page, a reload
    made a second token and a second invitation, Back asked to resubmit the form). The
    secret is shown once, after the redirect, and on no reload or Back; never in a URL."""
    from playwright.sync_api import expect

    base = world.base
    page = signed_in(browser, world, 1280, 800, then="/w/default/tokens")
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    try:
        shown: list[str] = []

        def secret_on_page() -> None:
            found = page.locator("#new-token")
            if found.count():
                shown.append(found.inner_text().strip())

        page.locator("#token-name").fill("made-once")
        page.get_by_role("button", name="Create token").click()
        page.wait_for_url(base + "/w/default/tokens")
        expect(page.locator("#new-token")).to_be_visible()
        secret_on_page()
        [secret] = shown
        assert re.fullmatch(r"tly_[A-Za-z0-9]{38}", secret)
        page.reload()
        secret_on_page()
        page.go_back()
        secret_on_page()
        page.go_forward()
        secret_on_page()
        assert shown == [secret]  # exactly once
        assert posted == [base + "/w/default/tokens"]  # no reload or Back re-posted it
        assert not any(secret in url for url in [*posted, page.url])
        assert [c for c in page.context.cookies() if c["name"] == "tally_reveal"] == []
        tokens = world.api("/v2/default/-/tokens").json()["data"]["tokens"]
        assert [t["name"] for t in tokens].count("made-once") == 1

        posted.clear()
        page.goto(base + "/w/default/members")
        page.locator("#invite-email").fill("once@example.com")
        page.get_by_role("button", name="Invite").click()
        page.wait_for_url(base + "/w/default/members")
        link = page.locator("#invite-link").inner_text().strip()
        assert "/invite/" in link
        page.reload()
        expect(page.locator("#invite-link")).to_have_count(0)
        page.go_back()
        expect(page.locator("#invite-link")).to_have_count(0)
        page.go_forward()
        expect(page.locator("#invite-link")).to_have_count(0)
        assert posted == [base + "/w/default/members"]
        expect(page.get_by_text("once@example.com as editor")).to_have_count(1)
    finally:
        page.context.close()


def test_an_invitation_link_says_who_invited_whom(page: Any, browser: Any, world: World) -> None:
    """An invitation link, signed out, shows who invited whom, to which workspace and in
    which role, with the address filled in and read-only (before: a plain sign-up form);
    signed in as another address it says so; once cancelled it says that, with no form,
    signed out and signed in; nothing scrolls sideways."""
    from playwright.sync_api import expect

    base = world.base
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    invited = f"guest-{width}@example.com"
    page.goto(base + "/w/default/members")
    page.locator("#invite-email").fill(invited)
    page.locator("#invite-role").select_option("viewer")
    page.get_by_role("button", name="Invite").click()
    link = page.locator("#invite-link").inner_text().strip()

    context = browser.new_context(viewport={"width": width, "height": height})
    guest = context.new_page()
    guest.set_default_timeout(TIMEOUT_MS)
    try:
        guest.goto(link)
        facts = guest.locator("#invitation")
        expect(facts).to_contain_text(f"{EMAIL} invited {invited} to the workspace")
        expect(facts).to_contain_text("(default) as viewer")
        email = guest.get_by_label("Email")
        expect(email).to_have_value(invited)
        expect(email).to_have_attribute("readonly", "")
        expect(guest.get_by_label("Password")).to_be_focused()
        expect(guest.get_by_role("button", name="Sign up and join")).to_be_visible()
        assert overflow(guest) == 0
        shot(guest, "invitation")
    finally:
        context.close()
    other = signed_in(browser, world, width, height, then=link.removeprefix(base))
    try:
        expect(other.locator("#invitation-other")).to_contain_text(f"is for {invited}")
        expect(other.get_by_role("button", name="Accept the invitation")).to_have_count(0)
        assert overflow(other) == 0
    finally:
        other.context.close()

    page.goto(base + "/w/default/members")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("listitem").filter(has_text=invited).get_by_role(
        "button", name="Cancel"
    ).click()
    expect(page.get_by_text("The invitation is cancelled.")).to_be_visible()
    for who in ("signed out", "signed in"):
        if who == "signed out":
            context = browser.new_context(viewport={"width": width, "height": height})
            gone = context.new_page()
            gone.set_default_timeout(TIMEOUT_MS)
            gone.goto(link)
        else:
            gone = signed_in(browser, world, width, height)
            gone.goto(link)
        try:
            expect(gone.locator("#invitation-gone")).to_contain_text(
                "This invitation was cancelled"
            )
            expect(gone.get_by_label("Password")).to_have_count(0)
            expect(gone.get_by_role("button", name="Accept the invitation")).to_have_count(0)
            assert overflow(gone) == 0
        finally:
            gone.context.close()


def _link(world: World, email: str, secret: str, expires_in: float, *, used: bool = False) -> None:
    """A confirmation link `secret` for `email`'s account, expiring in `expires_in` s (as
    the server writes one: tally.accounts.send_verification), used already if `used`."""
    import sqlite3
    import time

    from tally.links import secret_hash

    path = world.server.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        [(account_id,)] = db.execute("SELECT id FROM accounts WHERE email = ?", (email,))
        db.execute(
            "INSERT INTO one_time_tokens (hash, purpose, account_id, created_at, expires_at, "
            "used_at) VALUES (?, 'verify', ?, ?, ?, ?)",
            (
                secret_hash(secret),
                account_id,
                time.time(),
                time.time() + expires_in,
                time.time() if used else None,
            ),
        )


def test_error_and_link_pages_know_who_is_signed_in(page: Any, browser: Any, world: World) -> None:
    """A 404 shows the signed-in header (before: "Sign in"); an expired confirmation link
    has a button that sends a new one (before: "invalid, used or expired", go find the
    account page), signed out; a confirmed account reopening its link reads "already
    confirmed", with a way on."""
    from playwright.sync_api import expect

    base = world.base
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    page.goto(base + "/no/such/page")
    header = page.get_by_role("navigation", name="Account")
    expect(header).to_contain_text(EMAIL)
    expect(header.get_by_role("button", name="Sign out")).to_be_visible()
    expect(header.get_by_role("link", name="Sign in")).to_have_count(0)
    assert overflow(page) == 0
    shot(page, "not-found-signed-in")

    late = f"late-{width}@example.com"
    world.cli.run("user", "create", late, "--password", PASSWORD)
    _link(world, late, f"expired-{width}-0123456789", -60)
    context = browser.new_context(viewport={"width": width, "height": height})
    stranger = context.new_page()
    stranger.set_default_timeout(TIMEOUT_MS)
    try:
        stranger.goto(f"{base}/verify/expired-{width}-0123456789")
        expect(stranger.get_by_role("heading", name="This link has expired")).to_be_visible()
        assert overflow(stranger) == 0
        shot(stranger, "verify-expired")
        stranger.get_by_role("button", name="Send me a new link").click()
        stranger.wait_for_url(base + "/login")
        expect(stranger.get_by_text(f"We sent a new confirmation link to {late}")).to_be_visible()
    finally:
        context.close()

    _link(world, EMAIL, f"spent-{width}-0123456789", 3600, used=True)  # the one it took
    page.goto(f"{base}/verify/spent-{width}-0123456789")
    expect(page.get_by_role("heading", name="Already confirmed")).to_be_visible()
    page.get_by_role("link", name="Go to your workspaces").click()
    page.wait_for_url(re.compile(re.escape(base) + r"/(w/default)?$"))
    assert overflow(page) == 0


def docs_shot(page: Any, name: str) -> None:
    """TALLY_SCREENSHOTS=1: the page into docs/screenshots/NAME-WIDTH.png."""
    if os.environ.get("TALLY_SCREENSHOTS") == "1":
        width = page.viewport_size["width"]
        folder = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
        page.screenshot(path=str(folder / f"{name}-{width}.png"), full_page=True)


def test_periods_on_the_overview_and_the_counter_page(page: Any, world: World) -> None:
    """The overview is the workspace's first page: the period's totals for the whole
    workspace, the counters that changed most and a sparkline per listed counter; the
    period is in the URL (links, and a range of dates from the form); the counter
    page's period totals follow the live counts."""
    from playwright.sync_api import expect

    base = world.base
    counters = world.api("/v2/default/-/counters").json()["data"]["counters"]
    ups = sum(c["up_count"] for c in counters)  # all counted today
    page.goto(base + "/w/default?period=30d")
    expect(page.locator("#period-up .value")).to_have_text(str(ups))
    expect(page.locator("table.counters .sparkline")).to_have_count(len(counters))
    expect(page.locator("#movers li")).to_have_count(len(counters))
    assert overflow(page) == 0
    docs_shot(page, "overview")
    page.get_by_role("link", name="Last 12 months").click()
    page.wait_for_url(re.compile(r"period=12m"))
    expect(page.locator(".period-figure figcaption")).to_contain_text("Per week")
    page.locator("#from").fill("2026-01-01")
    page.locator("#to").fill("2026-01-31")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"from=2026-01-01&to=2026-01-31"))
    expect(page.locator("#period-title")).to_contain_text("1 Jan 2026 to 31 Jan 2026")
    assert overflow(page) == 0

    visits = world.ids["visits"]
    before = world.api("/v2/default/visits").json()["data"]["up_count"]
    page.goto(f"{base}/w/default/c/{visits}?period=today")
    expect(page.locator("#period-up .value")).to_have_text(str(before))
    expect(page.locator("#counts")).to_have_attribute("data-live", "open")
    world.api("/v2/default/visits/up")
    expect(page.locator("#up-count")).to_have_text(str(before + 1))
    expect(page.locator("#period-up .value")).to_have_text(str(before + 1))
    assert overflow(page) == 0
    docs_shot(page, "counter-period")


def test_shared_pages(page: Any, browser: Any, world: World) -> None:
    """An owner shares the overview by a secret link (shown once) and a counter publicly;
    someone without an account opens both: the same periods, sparklines and live counts,
    no way into the dashboard, nothing wider than the window; revoked, the link says it
    is gone (410)."""
    from playwright.sync_api import expect

    base = world.base
    page.goto(base + "/w/default/shares")
    page.locator("#share-name").fill("wall screen")
    page.get_by_role("button", name="Share", exact=True).click()
    url = page.locator("#share-url").inner_text().strip()
    assert "/s/" in url
    docs_shot(page, "shares")
    assert overflow(page) == 0
    visits = world.ids["visits"]
    page.goto(f"{base}/w/default/c/{visits}")
    page.locator("#share").get_by_label("Everyone").check()
    page.get_by_role("button", name="Share this counter").click()
    public = page.locator("#share-url").inner_text().strip()
    assert public.endswith(f"/p/default/c/{visits}")

    width, height = page.viewport_size["width"], page.viewport_size["height"]
    stranger = browser.new_context(viewport={"width": width, "height": height}).new_page()
    try:
        stranger.set_default_timeout(TIMEOUT_MS)
        stranger.goto(url + "?period=30d")
        expect(stranger.get_by_role("heading", level=1)).to_have_text("Default workspace")
        # a sparkline per row (other tests of the module add counters of their own)
        expect(stranger.locator("table.counters tbody tr").first).to_be_visible()
        rows = stranger.locator("table.counters tbody tr").count()
        assert rows >= len(world.ids)
        expect(stranger.locator("table.counters .sparkline")).to_have_count(rows)
        assert stranger.locator('a[href^="/w/"]').count() == 0
        assert overflow(stranger) == 0
        docs_shot(stranger, "shared-overview")
        before = world.api("/v2/default/visits").json()["data"]["up_count"]
        stranger.goto(public + "?period=today")
        expect(stranger.locator("#up-count")).to_have_text(str(before))
        expect(stranger.locator("#counts")).to_have_attribute("data-live", "open")
        world.api("/v2/default/visits/up")
        expect(stranger.locator("#up-count")).to_have_text(str(before + 1))
        expect(stranger.locator("#period-up .value")).to_have_text(str(before + 1))
        expect(stranger.locator("#charts")).to_have_attribute("data-loaded", str(before + 1))
        assert overflow(stranger) == 0
        docs_shot(stranger, "shared-counter")
        page.goto(base + "/w/default/shares")
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#shares tr", has_text="wall screen").get_by_role(
            "button", name="Revoke"
        ).click()
        expect(page.get_by_text("The share is revoked")).to_be_visible()
        response = stranger.goto(url)
        assert response is not None
        assert response.status == 410
    finally:
        stranger.context.close()
