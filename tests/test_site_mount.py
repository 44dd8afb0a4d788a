"""The website beside the API: /v2 stays on the plain ASGI path (JSON errors, no website
code imported by it), everything else is the website's."""

from __future__ import annotations

import subprocess
import sys

from conftest import BrowserFactory, Harness
from helpers import assert_error

from tally.models import Role


def test_the_api_does_not_import_the_website() -> None:
    """Importing the API's modules loads neither tally.site nor Starlette nor Jinja2."""
    code = (
        "import sys, tally.web.api, tally.web.http, tally.counters, tally.auth\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'jinja2')"
        " or m.startswith('tally.site'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


async def test_api_errors_stay_json_and_pages_are_html(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """Under /v2 an unknown route is the API's JSON 404; / is the dashboard's HTML."""
    assert_error(await harness.get("/v2/nope"), 404)
    assert_error(await harness.get("/v2"), 404)
    assert (await harness.get("/healthz")).json() == {"status": "ok"}
    b = await make_browser(harness)
    r = await b.get("/")
    assert r.status_code == 303
    assert r.headers["location"] == "/signup"  # a new instance: its first account
    page = await b.get("/login")
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-request-id"]  # like every answer of Tally's
    assert (await b.get("/static/site.css")).headers["x-request-id"]
    assert "content-security-policy" not in (await harness.get("/v2/nope")).headers


async def test_a_member_may_leave(harness: Harness, make_browser: BrowserFactory) -> None:
    """A member who is not the last owner leaves a workspace from the members page."""
    owner = await make_browser(harness)
    await owner.sign_up("owner@example.com")
    guest = await make_browser(harness)
    await guest.sign_up("guest@example.com")
    ws = await harness.store.get_workspace("owner")
    account = await harness.store.find_account("guest@example.com")
    assert ws is not None
    assert account is not None
    await harness.store.add_member(ws.id, account.id, Role.VIEWER, 0.0)
    await guest.get("/w/owner/members")
    r = await guest.post(f"/w/owner/members/{account.id}", {"action": "remove"})
    assert r.headers["location"] == "/"
    assert await harness.store.member_role(ws.id, account.id) is None
    assert (await guest.get("/w/owner")).status_code == 404
