"""The alerts page on the website (owners only), in-process on every backend: a webhook
added there (its secret shown once) and a rule fire to a real receiver on 127.0.0.1; the
delivery log shows the try and resends it with the same webhook-id; bad input, a missing
CSRF token and members below the owner role change nothing."""

from __future__ import annotations

import re

import pytest
from conftest import BrowserFactory, Harness, HarnessFactory
from site_client import SiteClient, text
from test_site_workspaces import member, verified
from webhook_receiver import Receiver

from tally.models import Permission, Role

PAGE = "/w/ann/alerts"


@pytest.fixture
def receiver() -> object:
    r = Receiver().start()
    yield r
    r.stop()


async def owner(harness: Harness, make_browser: BrowserFactory) -> SiteClient:
    b = await verified(harness, make_browser, "ann@example.com")
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    await harness.counter(ws, "stock")
    await b.get(PAGE)  # for the CSRF token
    return b


async def test_the_owner_sets_an_alert_and_resends_a_delivery(
    make_harness: HarnessFactory, make_browser: BrowserFactory, receiver: Receiver
) -> None:
    """Add a webhook (the secret shown once), a rule on a counter; an up that crosses it
    reaches the receiver signed; the log and the delivery's page show it; Resend sends it
    again with the same webhook-id."""
    harness = await make_harness(webhook_private=True, alert_backoff_scale=0.01)
    b = await owner(harness, make_browser)
    r = await b.post(PAGE, {"form": "webhook", "url": receiver.url, "description": "ops"})
    assert r.status_code == 303, text(r)  # Post/Redirect/Get: a reload adds no second one
    assert "whsec_" not in r.headers["location"]
    shown = await b.follow(r)
    secret = re.search(r'<code id="new-secret">(whsec_[^<]+)</code>', shown.text)
    assert secret is not None
    receiver.secret = secret.group(1)
    assert secret.group(1) not in (await b.get(PAGE)).text  # shown once
    # a planted cookie naming some other value shows nothing
    b.client.cookies.set("tally_reveal", "whsec_forged", path=PAGE)
    assert 'id="new-secret"' not in (await b.get(PAGE)).text
    hook = (await harness.store.list_webhooks(await harness.workspace_id("ann")))[0]
    r = await b.post(
        PAGE, {"form": "rule", "counter": "stock", "kind": "above", "threshold": "2",
               "target": str(hook.id)}
    )  # fmt: skip
    assert r.status_code == 303, text(r)
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    token = await harness.token(ws, Permission.WRITE)
    for _ in range(2):
        assert (await harness.get("/v2/ann/stock/up", token)).status_code == 200
    got = await receiver.wait_for(1, 10)
    assert got[0].signed
    assert got[0].body["data"]["counter"] == "stock"
    firing = (await harness.store.list_firings(ws.id))[0]
    page = await b.get(PAGE)
    assert "stock" in text(page)
    assert f"/alerts/deliveries/{firing.id}" in page.text
    r = await b.post(f"{PAGE}/deliveries/{firing.id}/resend")
    assert r.status_code == 303
    again = await receiver.wait_for(2, 10)
    assert again[1].event_id == got[0].event_id
    detail = await b.get(f"{PAGE}/deliveries/{firing.id}")
    assert detail.status_code == 200
    assert got[0].event_id in detail.text
    assert "204" in text(detail)


async def test_bad_input_csrf_and_roles_change_nothing(
    make_harness: HarnessFactory, make_browser: BrowserFactory
) -> None:
    """A non-http URL, a private address, a bad threshold or an unknown counter are shown
    as errors; a missing CSRF token is a 403; an editor gets 403 and a stranger 404;
    nothing is saved."""
    harness = await make_harness()
    b = await owner(harness, make_browser)
    for url in ("ftp://example.com/", "http://127.0.0.1/h", "http://169.254.169.254/"):
        r = await b.post(PAGE, {"form": "webhook", "url": url})
        assert r.status_code == 400, (url, text(r))
    r = await b.post(PAGE, {"form": "webhook", "url": "https://example.com/h"})
    assert r.status_code == 303
    hook_id = (await harness.store.list_webhooks(await harness.workspace_id("ann")))[0].id
    for threshold, counter in (("x", "stock"), ("1e3", "stock"), ("5", "nope"), ("9" * 30, "")):
        r = await b.post(
            PAGE, {"form": "rule", "counter": counter, "kind": "above", "threshold": threshold,
                   "target": str(hook_id)}
        )  # fmt: skip
        assert r.status_code in (400, 404), (threshold, text(r))
    r = await b.post(PAGE, {"form": "webhook", "url": "https://example.com/2"}, csrf="")
    assert r.status_code == 403
    editor = await member(harness, make_browser, "ed@example.com", "ann", Role.EDITOR)
    assert (await editor.get(PAGE)).status_code == 403
    stranger = await verified(harness, make_browser, "zed@example.com")
    assert (await stranger.get(PAGE)).status_code == 404
    ws_id = await harness.workspace_id("ann")
    assert len(await harness.store.list_webhooks(ws_id)) == 1
    assert await harness.store.list_alert_rules(ws_id) == []
