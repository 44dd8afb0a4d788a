"""The counter page's live stream (/w/SLUG/c/ID/stream), in-process on every backend:
a member's session cookie opens it (no token), it sends the API's counter JSON after
every change, and it ends when the session or the membership ends."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import BrowserFactory, Harness, HarnessFactory
from site_client import SiteClient
from sse import OpenStream
from test_site_workspaces import member, verified

from tally.models import Counter, Permission, Role
from tally.site import live


def cookie(b: SiteClient) -> list[tuple[bytes, bytes]]:
    session = b.client.cookies.get("tally_session")
    return [(b"cookie", f"tally_session={session}".encode())] if session else []


async def private_counter(
    harness: Harness, make_browser: BrowserFactory
) -> tuple[SiteClient, Counter, str]:
    b = await verified(harness, make_browser, "ann@example.com")
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    counter = await harness.counter(ws, "hits", private=True)
    return b, counter, await harness.token(ws, Permission.WRITE)


async def test_a_members_session_streams_a_private_counter(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """The first event is the counter as the API's get shows it, then one after each up
    made through the API; the stream is not shared with other sites (no CORS header)."""
    b, counter, token = await private_counter(harness, make_browser)
    stream = await OpenStream(harness.app, f"/w/ann/c/{counter.id}/stream", cookie(b)).open()
    assert stream.status == 200
    assert stream.response_headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert b"access-control-allow-origin" not in stream.response_headers
    first = await stream.next_data()
    assert first == (await harness.get("/v2/ann/hits", token)).json()["data"]
    for expected in (1, 2):
        up = await harness.get("/v2/ann/hits/up", token)
        data = await stream.next_data()
        assert data["up_count"] == expected
        assert data == up.json()["data"]
    stream.drop()
    await stream.closed()


@pytest.mark.parametrize("who", ["nobody", "outsider", "viewer", "other-id"])
async def test_who_may_open_the_stream(
    harness: Harness, make_browser: BrowserFactory, who: str
) -> None:
    """No session: 401 (not a redirect, which EventSource would follow to HTML); not a
    member: 404; a viewer: 200; another workspace's counter id under one's own: 404."""
    _b, counter, _token = await private_counter(harness, make_browser)
    path, headers, status = f"/w/ann/c/{counter.id}/stream", [], 200
    if who == "outsider":
        headers, status = cookie(await verified(harness, make_browser, "eve@example.com")), 404
    elif who == "viewer":
        headers = cookie(await member(harness, make_browser, "vi@example.com", "ann", Role.VIEWER))
    elif who == "other-id":
        headers = cookie(await verified(harness, make_browser, "eve@example.com"))
        path, status = f"/w/eve/c/{counter.id}/stream", 404
    elif who == "nobody":
        status = 401
    stream = await OpenStream(harness.app, path, headers).open()
    assert stream.status == status
    if status == 200:
        await stream.next_data()
        stream.drop()
    else:  # the error page, no event
        assert (b"Sign in again" if status == 401 else b"No such") in stream.body
        assert b"data: " not in stream.body
    await stream.closed()


async def test_signing_out_ends_the_stream(
    make_harness: HarnessFactory, make_browser: BrowserFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the session is signed out, the stream ends at its next read, without the new
    value (the session is checked again every RECHECK seconds: 0 here)."""
    monkeypatch.setattr(live, "RECHECK", 0.0)
    harness = await make_harness()
    b, counter, token = await private_counter(harness, make_browser)
    stream = await OpenStream(harness.app, f"/w/ann/c/{counter.id}/stream", cookie(b)).open()
    await stream.next_data()
    await b.get("/account")
    assert (await b.post("/logout")).status_code == 303
    assert (await harness.get("/v2/ann/hits/up", token)).status_code == 200
    data, _ = await stream.ended_with()
    assert (data["code"], data["reason"]) == ("401", "unauthorized")
    await stream.closed()


@pytest.mark.parametrize("change", ["sign-out", "delete"])
async def test_a_quiet_stream_ends_within_one_heartbeat(
    make_harness: HarnessFactory, make_browser: BrowserFactory, change: str
) -> None:
    """With no change of its counts, the stream of a signed-out session, or of a deleted
    counter, ends within one heartbeat with the `end` event giving the reason."""
    heartbeat = 0.5
    harness = await make_harness(stream_heartbeat=heartbeat)
    b, counter, _token = await private_counter(harness, make_browser)
    stream = await OpenStream(harness.app, f"/w/ann/c/{counter.id}/stream", cookie(b)).open()
    await stream.next_data()
    await asyncio.sleep(heartbeat * 1.5)  # a heartbeat went by: the stream was fine then
    if change == "sign-out":
        await b.get("/account")
        assert (await b.post("/logout")).status_code == 303
    else:
        await harness.store.delete_counter(counter.id)
    changed = time.monotonic()
    data, at = await stream.ended_with(within=heartbeat * 2 + 10)
    assert data["reason"] == ("unauthorized" if change == "sign-out" else "not_found")
    assert at - changed < heartbeat + 1.0, at - changed  # a loaded machine's slack
    await stream.closed()


async def test_leaving_the_workspace_ends_the_stream(
    make_harness: HarnessFactory, make_browser: BrowserFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "RECHECK", 0.0)
    harness = await make_harness()
    _owner, counter, token = await private_counter(harness, make_browser)
    viewer = await member(harness, make_browser, "vi@example.com", "ann", Role.VIEWER)
    path = f"/w/ann/c/{counter.id}/stream"
    theirs = await OpenStream(harness.app, path, cookie(viewer)).open()
    await theirs.next_data()
    account = await harness.store.find_account("vi@example.com")
    assert account is not None
    await harness.store.remove_member(counter.workspace_id, account.id)
    await harness.get("/v2/ann/hits/up", token)
    data, _ = await theirs.ended_with()
    assert data["reason"] == "not_found"  # a non-member's answer: the workspace's 404
    await theirs.closed()
    assert harness.app.services is not None
    assert harness.app.services.streams.open == 0
