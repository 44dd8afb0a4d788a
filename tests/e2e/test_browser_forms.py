"""The new-counter form and the unique-visitor window in a real browser (Playwright and
Debian's chromium, as tests/e2e/test_browser.py), on a desktop and a phone window:
a pasted name is never cut or trimmed into another counter's name, the server's reason
is shown instead, and a window typed as 24h comes back as 24h."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .server import TallyCli, TallyServer
from .test_browser import ARGS, TIMEOUT_MS, chromium

__all__ = ["chromium"]  # the fixture, shared with test_browser.py

EMAIL, PASSWORD = "ada@example.com", "an excellent passphrase"
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}


@pytest.fixture(params=list(VIEWPORTS))
def page(request: pytest.FixtureRequest, chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    width, height = VIEWPORTS[request.param]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        try:
            yield page
        finally:
            context.close()
            browser.close()


@pytest.fixture
def signed_in(tmp_path: Path, page: Any) -> Iterator[tuple[Any, TallyServer, TallyCli, str]]:
    """A server (SQLite) with a confirmed account, signed in: (page, server, cli, slug)."""
    from playwright.sync_api import expect

    server = TallyServer(tmp_path, args=["--no-bootstrap"], env={"TALLY_RATE_LIMIT": "off"})
    cli = TallyCli(server.database_url)
    made = cli.run("user", "create", EMAIL, "--password", PASSWORD, "--verified").stdout
    slug = made.rsplit("workspace ", 1)[1].strip()
    server.start()
    try:
        page.goto(server.base_url + "/login")
        page.get_by_label("Email").fill(EMAIL)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{server.base_url}/w/{slug}")
        yield page, server, cli, slug
    finally:
        server.close()


def _fits(page: Any) -> None:
    """Nothing is wider than the window (no sideways scrolling on a phone)."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_a_pasted_name_is_never_cut_or_trimmed(
    signed_in: tuple[Any, TallyServer, TallyCli, str],
) -> None:
    """A pasted 200-character name stays whole in the field and is refused with the
    server's reason (the field used to cut it to 128 and make that counter); a name
    with a space at an end is refused, not trimmed; nothing is made until a good name."""
    from playwright.sync_api import expect

    page, server, cli, slug = signed_in
    new = f"{server.base_url}/w/{slug}/counters/new"
    name_field = page.get_by_label("Name", exact=True)
    error = page.locator("#form-error")
    long_name = "visits-of-the-spring-campaign-" * 6 + "x" * 20  # 200 characters
    assert len(long_name) == 200

    page.goto(new)
    name_field.focus()
    page.keyboard.insert_text(long_name)  # as a paste
    assert name_field.input_value() == long_name
    page.get_by_role("button", name="Create counter").click()
    expect(error).to_have_text("The counter name is longer than 128 characters")
    assert name_field.input_value() == long_name  # shown as typed, to be shortened
    _fits(page)

    for typed in (" ", " visits", "visits "):
        name_field.fill("")
        name_field.focus()
        page.keyboard.insert_text(typed)
        page.get_by_role("button", name="Create counter").click()
        expect(error).to_have_text("The counter name must not begin or end with a space")
        assert name_field.input_value() == typed
        _fits(page)
    assert cli.run("counter", "list", slug).stdout == ""

    name_field.fill("visits")
    page.get_by_role("button", name="Create counter").click()
    expect(page.get_by_text("Counter visits created.")).to_be_visible()
    assert [
        line.split("\t")[1] for line in cli.run("counter", "list", slug).stdout.splitlines()
    ] == ["visits"]


@pytest.mark.parametrize(
    ("typed", "field", "now"),
    [("24h", "24h", "24h (1 day)"), ("1d", "24h", "24h (1 day)"), ("168h", "7d", "7d (168 hours)")],
)
def test_the_unique_window_comes_back_as_typed(
    signed_in: tuple[Any, TallyServer, TallyCli, str], typed: str, field: str, now: str
) -> None:
    """A window typed as 24h shows as 24h, not 1d; whole days show both units."""
    from playwright.sync_api import expect

    page, server, cli, slug = signed_in
    cli.counter(f"{slug}/visits")
    page.goto(f"{server.base_url}/w/{slug}")
    page.get_by_role("link", name="visits").click()
    window = page.get_by_label("Unique visitors")
    window.fill(typed)
    page.get_by_role("button", name="Save limits").click()
    expect(page.get_by_text("The limits are saved.")).to_be_visible()
    expect(page.locator("#unique-now")).to_have_text(now)
    assert window.input_value() == field
    assert f"unique={now}" in cli.run("counter", "unique", f"{slug}/visits").stdout
    _fits(page)
