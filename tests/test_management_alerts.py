"""The management API's alert routes (/v2/{workspace}/-/webhooks, /-/alerts,
/-/deliveries), in-process on both backends: a crossing reaches a real receiver on
127.0.0.1 signed, bad input changes nothing, other workspaces' ids are 404s, a burst of
creations stays within the limits, the delivery log and resend; email rules through a
real SMTP server, and a "no change for" rule from the periodic sweep."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from conftest import Harness, HarnessFactory
from helpers import bearer
from smtp_inbox import Inbox, smtp_settings
from webhook_receiver import Receiver

from tally import alerts
from tally.models import CounterRecord, Permission

HOOKS = "/v2/ws/-/webhooks"
RULES = "/v2/ws/-/alerts"
LOG = "/v2/ws/-/deliveries"


async def call(h: Harness, method: str, path: str, token: str, body: Any = None) -> httpx.Response:
    kw: dict[str, Any] = {} if body is None else {"json": body}
    return await h.client.request(method, path, headers=bearer(token), **kw)


@pytest.fixture
async def receiver() -> Any:
    r = Receiver().start()
    yield r
    r.stop()


async def admin(h: Harness) -> str:
    ws = await h.workspace()
    await h.counter(ws, "c")
    return await h.token(ws, Permission.ADMIN)


async def hook(h: Harness, token: str, receiver: Receiver) -> int:
    r = await call(h, "POST", HOOKS, token, {"url": receiver.url, "description": "test"})
    assert r.status_code == 201, r.text
    receiver.secret = r.json()["data"]["secret"]
    return int(r.json()["data"]["id"])


async def test_a_crossing_reaches_the_receiver_signed(
    make_harness: HarnessFactory, receiver: Receiver
) -> None:
    """A rule made through the API fires once when an up crosses it; the receiver gets
    it signed, with the documented body; the log shows it delivered with its try, and a
    resend delivers it again with the same webhook-id."""
    h = await make_harness(webhook_private=True, alert_backoff_scale=0.01)
    token = await admin(h)
    write = await h.token(
        await h.store.get_workspace("ws") or await h.workspace(), Permission.WRITE
    )
    hook_id = await hook(h, token, receiver)
    r = await call(
        h,
        "POST",
        RULES,
        token,
        {"counter": "c", "kind": "above", "threshold": 2, "webhook_id": hook_id},
    )
    assert r.status_code == 201, r.text
    assert r.json()["data"]["counter"] == "c"
    for _ in range(3):
        assert (await h.get("/v2/ws/c/up", write)).status_code == 200
    got = await receiver.wait_for(1, 10)
    assert got[0].signed
    assert got[0].body == {
        "type": "counter.above",
        "timestamp": got[0].body["timestamp"],
        "data": {"workspace": "ws", "counter": "c", "counter_id": got[0].body["data"]["counter_id"],
                 "rule_id": r.json()["data"]["id"], "kind": "above", "threshold": 2,
                 "value_before": 1, "value": 2},
    }  # fmt: skip
    logged = (await call(h, "GET", LOG, token)).json()["data"]["deliveries"]
    for _ in range(200):  # the try is logged just after the answer
        if logged[0]["state"] == "delivered":
            break
        await asyncio.sleep(0.01)
        logged = (await call(h, "GET", LOG, token)).json()["data"]["deliveries"]
    assert [(d["event_id"], d["state"], d["attempts"]) for d in logged] == [
        (got[0].event_id, "delivered", 1)
    ]
    one = (await call(h, "GET", f"{LOG}/{logged[0]['id']}", token)).json()["data"]
    assert [(a["status"], a["attempt"]) for a in one["attempts_log"]] == [(204, 1)]
    assert one["body"] == got[0].body
    assert (await call(h, "POST", f"{LOG}/{logged[0]['id']}", token)).status_code == 202
    again = await receiver.wait_for(2, 10)
    assert again[1].event_id == again[0].event_id
    assert again[1].signed


async def test_bad_input_changes_nothing(make_harness: HarnessFactory, receiver: Receiver) -> None:
    """Non-http(s) URLs, private addresses (without TALLY_WEBHOOK_PRIVATE), bad kinds and
    thresholds, unknown counters and webhooks, email without SMTP: 400 or 404 in the
    documented shape, and nothing is saved."""
    h = await make_harness()
    token = await admin(h)
    for url in ("ftp://example.com/x", "file:///etc/passwd", "http://127.0.0.1:9/h",
                "http://[::1]/h", "http://10.0.0.1/h", "http://user:pw@example.com/",
                "javascript:alert(1)", "", 5, None, "http://exa mple.com/"):  # fmt: skip
        r = await call(h, "POST", HOOKS, token, {"url": url})
        assert r.status_code == 400, (url, r.text)
        assert set(r.json()) == {"code", "message"}
    made = await call(h, "POST", HOOKS, token, {"url": "https://example.com/h"})
    assert made.status_code == 201
    assert made.json()["data"]["secret"].startswith("whsec_")
    hook_id = made.json()["data"]["id"]
    assert "secret" not in (await call(h, "GET", HOOKS, token)).json()["data"]["webhooks"][0]
    bad_rules = [
        ({"counter": "c", "kind": "over", "threshold": 1, "webhook_id": hook_id}, 400),
        ({"counter": "c", "kind": "above", "threshold": "1", "webhook_id": hook_id}, 400),
        ({"counter": "c", "kind": "above", "threshold": 2**63, "webhook_id": hook_id}, 400),
        ({"counter": "c", "kind": "quiet", "threshold": 5, "webhook_id": hook_id}, 400),
        ({"counter": "c", "kind": "rate", "threshold": -1, "webhook_id": hook_id}, 400),
        ({"counter": "nope", "kind": "above", "threshold": 1, "webhook_id": hook_id}, 404),
        ({"counter": "c", "kind": "above", "threshold": 1, "webhook_id": hook_id + 99}, 404),
        ({"counter": "c", "kind": "above", "threshold": 1}, 400),
        ({"counter": "c", "kind": "above", "threshold": 1, "email": "a@b.example"}, 400),
        ({"counter": "c", "kind": "above", "threshold": 1, "webhook_id": hook_id, "x": 1}, 400),
    ]
    for body, status in bad_rules:
        r = await call(h, "POST", RULES, token, body)
        assert r.status_code == status, (body, r.text)
    assert (await call(h, "GET", RULES, token)).json()["data"]["alerts"] == []
    assert (await h.client.post(RULES, content=b"{", headers=bearer(token))).status_code == 400


async def test_other_workspaces_and_weaker_tokens(make_harness: HarnessFactory) -> None:
    """Another workspace's webhook, rule or delivery id is a 404; a Write token is a 403,
    none a 401."""
    h = await make_harness()
    token = await admin(h)
    other = await h.workspace("other")
    theirs = await h.token(other, Permission.ADMIN)
    r = await call(h, "POST", "/v2/other/-/webhooks", theirs, {"url": "https://example.com/"})
    their_hook = r.json()["data"]["id"]
    for path in (f"{HOOKS}/{their_hook}", f"{RULES}/1", f"{LOG}/1", f"{HOOKS}/x", f"{HOOKS}/0"):
        assert (await call(h, "GET", path, token)).status_code == 404, path
    r = await call(
        h, "POST", RULES, token, {"kind": "above", "threshold": 1, "webhook_id": their_hook}
    )
    assert r.status_code == 404
    write = await h.token(await h.store.get_workspace("ws") or other, Permission.WRITE)
    assert (await call(h, "GET", HOOKS, write)).status_code == 403
    assert (await h.client.get(HOOKS)).status_code == 401


async def test_a_burst_of_creations_keeps_the_limits(make_harness: HarnessFactory) -> None:
    """200 rules and 50 webhooks asked for at once: at most the limits are made, the rest
    409, no 5xx."""
    h = await make_harness(rate_limit=None)
    token = await admin(h)
    hooks = await asyncio.gather(
        *(call(h, "POST", HOOKS, token, {"url": f"https://example.com/{i}"}) for i in range(50))
    )
    assert sorted({r.status_code for r in hooks}) == [201, 409]
    assert sum(r.status_code == 201 for r in hooks) == alerts.MAX_WEBHOOKS
    hook_id = next(r.json()["data"]["id"] for r in hooks if r.status_code == 201)
    body = {"kind": "above", "threshold": 1, "webhook_id": hook_id}
    rules = await asyncio.gather(*(call(h, "POST", RULES, token, body) for _ in range(200)))
    assert sorted({r.status_code for r in rules}) == [201, 409]
    assert len((await call(h, "GET", RULES, token)).json()["data"]["alerts"]) == alerts.MAX_RULES


async def test_an_email_rule_mails_its_firing(
    make_harness: HarnessFactory, smtp: tuple[Inbox, int]
) -> None:
    """With SMTP on, a rule may send its firings by email: one crossing, one email to
    the address, through a real SMTP server on 127.0.0.1; the log shows it delivered."""
    inbox, port = smtp
    h = await make_harness(**smtp_settings(port))
    token = await admin(h)
    body = {"counter": "c", "kind": "below", "threshold": -1, "email": "ops@example.com"}
    r = await call(h, "POST", RULES, token, body)
    assert r.status_code == 201, r.text
    write = await h.token(
        await h.store.get_workspace("ws") or await h.workspace(), Permission.WRITE
    )
    for _ in range(3):
        assert (await h.get("/v2/ws/c/down", write)).status_code == 200
    mail = await inbox.wait_for("ops@example.com", "ws/c fell to -1 (now -1)")
    assert b'"counter.below"' in (mail.get_payload(decode=True) or b"")
    await asyncio.sleep(0.2)
    assert len([m for m in inbox.messages if m["To"] == "ops@example.com"]) == 1


async def test_a_quiet_counter_fires_once(make_harness: HarnessFactory, receiver: Receiver) -> None:
    """A "no change for" rule fires from the deliverer's periodic sweep once the counter
    has been quiet for its duration (here: imported as last changed 2 minutes ago), and
    once only for that quiet spell."""
    h = await make_harness(webhook_private=True, alert_interval=0.05)
    ws = await h.workspace()
    token = await h.token(ws, Permission.ADMIN)
    then = time.time() - 120
    record = CounterRecord("idle", "", False, 5, 0, then, then, None)
    await h.store.import_counters(ws.id, [record])
    hook_id = await hook(h, token, receiver)
    body = {"counter": "idle", "kind": "quiet", "threshold": 60, "webhook_id": hook_id}
    assert (await call(h, "POST", RULES, token, body)).status_code == 201
    got = await receiver.wait_for(1, 10)
    assert got[0].body["type"] == "counter.quiet"
    assert got[0].body["data"]["value"] == 5
    await asyncio.sleep(0.3)  # several sweeps later
    assert len(receiver.ids()) == 1
