"""Shared dashboards (tally/shares.py, tally/site/shares.py), in-process on both backends:
made by an owner on the dashboard or with an Admin token; a secret link keeps only its
hash; a shared page shows what it shares and nothing else (the overview's private
counters only when picked, never another counter); revoked or expired it is a 410, an
unknown one a 404; the live stream is scoped to the share and ends with it; shared
pages have their own rate limit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from conftest import BrowserFactory, Harness
from sse import OpenStream

from tally.config import RateLimit
from tally.links import secret_hash
from tally.models import Permission, Workspace


async def setup(harness: Harness) -> tuple[Workspace, dict[str, int], dict[str, str]]:
    ws = await harness.workspace()
    admin = await harness.token(ws, Permission.ADMIN)
    write = await harness.token(ws, Permission.WRITE)
    ids = {}
    for name, private in (("pub", False), ("secret-sauce", True), ("classified", True)):
        ids[name] = (await harness.counter(ws, name, private=private)).id
    for name in ("pub", "secret-sauce", "classified"):
        r = await harness.get(f"/v2/ws/{name}/up", write)
        assert r.status_code == 200, r.text
    return ws, ids, {"admin": admin, "write": write}


async def post(harness: Harness, token: str, body: dict[str, Any]) -> Any:
    r = await harness.client.post(
        "/v2/ws/-/shares", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    return r


async def test_secret_overview_share_shows_only_what_is_shared(harness: Harness) -> None:
    """A secret overview link (the answer's url) shows the public counters and the
    picked private one, never the other; only the secret's hash is stored; the link
    reaches no counter page, no dashboard page; revoked it answers 410 and its listing
    says so; an unknown secret is a 404."""
    _, ids, tokens = await setup(harness)
    r = await post(harness, tokens["admin"], {"include_private": [ids["secret-sauce"]]})
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    url = data["url"]
    assert url.startswith("http://tally.test/s/")
    secret = url.rsplit("/", 1)[1]
    share = await harness.store.find_secret_share(secret_hash(secret))
    assert share is not None
    assert share.id == data["id"]
    page = await harness.client.get(url)
    assert page.status_code == 200
    assert "pub" in page.text
    assert "secret-sauce" in page.text
    assert "classified" not in page.text
    assert "/w/ws" not in page.text  # no way into the dashboard
    assert page.headers["cache-control"] == "no-store"
    assert (await harness.client.get(url + "/period?period=today")).status_code == 200
    # an overview share has no counter page, counts or stream
    assert (await harness.client.get(url + "/counts")).status_code == 404
    assert (await harness.client.get(url + "/data.json")).status_code == 404
    assert (await harness.client.get(url + "/stream")).status_code == 404
    assert (await harness.client.get(f"/s/{secret}/c/{ids['classified']}")).status_code == 404
    # the list shows the share without its secret; the url only for public ones
    listed = await harness.get("/v2/ws/-/shares", tokens["admin"])
    assert listed.json()["data"]["shares"][0]["url"] is None
    assert secret not in listed.text
    revoked = await harness.client.delete(
        f"/v2/ws/-/shares/{data['id']}", headers={"Authorization": f"Bearer {tokens['admin']}"}
    )
    assert revoked.status_code == 200
    assert revoked.json()["data"]["revoked_at"] is not None
    assert (await harness.client.get(url)).status_code == 410
    assert (await harness.client.get(url + "/period")).status_code == 410
    assert (await harness.client.get("/s/" + "x" * 43)).status_code == 404
    assert (await harness.client.get("/s/short")).status_code == 404


async def test_public_counter_share_and_its_stream(make_harness: Any) -> None:
    """A public share of a (private) counter is at /p/SLUG/c/ID for anyone; its stream
    sends the counter's counts and ends once the share is revoked; the workspace's
    overview and its other counters stay unshared (404)."""
    harness = await make_harness(stream_heartbeat=0.5)
    _, ids, tokens = await setup(harness)
    target = ids["secret-sauce"]
    r = await post(harness, tokens["admin"], {"counter_id": target, "public": True})
    assert r.status_code == 201, r.text
    url = r.json()["data"]["url"]
    assert url == f"http://tally.test/p/ws/c/{target}"
    page = await harness.client.get(f"/p/ws/c/{target}?period=30d")
    assert page.status_code == 200
    assert "secret-sauce" in page.text
    assert f'data-stream="/p/ws/c/{target}/stream"' in page.text
    assert (await harness.client.get(f"/p/ws/c/{ids['classified']}")).status_code == 404
    assert (await harness.client.get(f"/p/ws/c/{ids['pub']}")).status_code == 404
    assert (await harness.client.get("/p/ws")).status_code == 404
    assert (await harness.client.get("/p/nope")).status_code == 404
    assert (await harness.client.get(f"/p/ws/c/{target}/counts")).status_code == 200
    charts = (await harness.client.get(f"/p/ws/c/{target}/data.json?period=7d")).json()
    assert charts["up_count"] == 1
    assert set(charts) >= {"hourly", "daily", "hour_of_day", "weekday", "period"}
    assert charts["period"]["up"] == 1
    stream = await OpenStream(harness.app, f"/p/ws/c/{target}/stream", []).open()
    try:
        assert stream.status == 200
        share = r.json()["data"]["id"]
        await harness.client.delete(
            f"/v2/ws/-/shares/{share}", headers={"Authorization": f"Bearer {tokens['admin']}"}
        )
        # the next heartbeat finds it revoked: the stream ends
        events = []
        while (event := await stream.next_event(within=10)) is not None:
            events.append(event)
        assert events[0].data is not None
        assert events[0].data["up_count"] == 1
        assert events[-1].name == "end"
    finally:
        stream.drop()
    assert (await harness.client.get(f"/p/ws/c/{target}")).status_code == 410


async def test_expired_share_is_gone(harness: Harness) -> None:
    ws, _, _ = await setup(harness)
    now = time.time()
    share = await harness.store.create_share(
        ws.id,
        None,
        public=True,
        secret_hash=None,
        prefix="",
        name="",
        include_private=(),
        created_by=None,
        now=now - 10,
        expires_at=now - 1,
    )
    assert share.expires_at is not None
    assert (await harness.client.get("/p/ws")).status_code == 410


async def test_bad_share_requests_change_nothing(harness: Harness) -> None:
    """Another workspace's counter, a wrong type, an unknown field: 4xx, no share made;
    a Write token may not share (403)."""
    ws, _, tokens = await setup(harness)
    other = await harness.workspace("other")
    stranger = await harness.counter(other, "theirs")
    for body in (
        {"counter_id": stranger.id},
        {"counter_id": "1"},
        {"public": "yes"},
        {"include_private": [stranger.id]},
        {"include_private": "all"},
        {"expires_in_days": 0},
        {"colour": "red"},
        {"name": "n" * 101},
    ):
        r = await post(harness, tokens["admin"], body)
        assert r.status_code in (400, 404), (body, r.text)
    assert (await post(harness, tokens["write"], {})).status_code == 403
    assert await harness.store.list_shares(ws.id) == []


async def test_the_dashboard_makes_and_revokes_shares(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """An owner shares the overview (with a private counter picked by name) from the
    Shares page and sees the link once; revokes it there; the link then answers 410."""
    b = await make_browser(harness)
    assert (await b.sign_up("ann@example.com")).status_code == 303
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    await harness.counter(ws, "open")
    await harness.counter(ws, "closed", private=True)
    r = await b.submit("/w/ann/shares", {"kind": "secret", "include": "closed", "name": "board"})
    assert r.status_code == 303  # Post/Redirect/Get: a reload makes no second share
    assert "/s/" not in r.headers["location"]
    shown = await b.follow(r)
    found = shown.text.split('id="share-url">', 1)[1].split("<", 1)[0]
    assert "/s/" in found
    assert 'id="share-url"' not in (await b.get("/w/ann/shares")).text  # shown once
    shared = await harness.client.get(found.replace("http://tally.test", ""))
    assert shared.status_code == 200
    assert "closed" in shared.text
    bad = await b.submit("/w/ann/shares", {"kind": "secret", "include": "nope"})
    assert bad.status_code == 400
    assert "no counter of this workspace" in bad.text
    [share] = await harness.store.list_shares(ws.id)
    r = await b.submit(f"/w/ann/shares/{share.id}/revoke", {})
    assert r.status_code == 303
    assert (await harness.client.get(found.replace("http://tally.test", ""))).status_code == 410


async def test_shared_pages_have_their_own_rate_limit(make_harness: Any) -> None:
    """Past TALLY_SHARE_RATE_LIMIT a client gets 429 with Retry-After on shared pages,
    whatever forwarding headers it forges, while the API answers on."""
    harness = await make_harness(share_rate_limit=RateLimit(5, 60.0))
    ws, _, tokens = await setup(harness)
    await harness.store.create_share(
        ws.id,
        None,
        public=True,
        secret_hash=None,
        prefix="",
        name="",
        include_private=(),
        created_by=None,
        now=time.time(),
        expires_at=None,
    )
    # forged forwarding headers change nothing: the client is the connection's address
    statuses = await asyncio.gather(
        *(
            harness.client.get("/p/ws", headers={"X-Forwarded-For": f"203.0.113.{i}"})
            for i in range(20)
        )
    )
    codes = [r.status_code for r in statuses]
    assert codes.count(200) == 5, codes
    assert codes.count(429) == 15, codes
    assert "retry-after" in next(r for r in statuses if r.status_code == 429).headers
    assert (await harness.get("/v2/ws/pub", tokens["write"])).status_code == 200
