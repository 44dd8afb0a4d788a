"""Mail floods against a real server, on SQLite and on PostgreSQL + Redis, with a real
SMTP server (aiosmtpd) counting what arrives: 60 invitations at once to one address,
an inviter inviting everyone, 20 sign-ups at once from one client, /forgot hammered.
Past each limit the answer is a 429 saying why, and no email is sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from smtp_inbox import Inbox, smtp_server

from tally.throttle import INVITES_BY, MAIL_FROM, MAIL_TO, SIGNUPS_FROM

from .abuse import PASSWORD, Backend, Browser, backend, make_account, raw_posts
from .server import TallyServer

pytestmark = [pytest.mark.e2e, pytest.mark.abuse]
__all__ = ["backend"]  # the fixture, for pytest


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """An SMTP server on 127.0.0.1 that keeps every message."""
    with smtp_server() as pair:
        yield pair


def mailing_server(backend: Backend, port: int) -> TallyServer:
    env = {
        "TALLY_SMTP_HOST": "127.0.0.1",
        "TALLY_SMTP_PORT": str(port),
        "TALLY_PUBLIC_URL": "http://tally.test",  # mailed links name it (never a Host)
    }
    return backend.server({**env, "TALLY_SMTP_SECURITY": "none"}).start()


def to(inbox: Inbox, address: str | None = None) -> int:
    return sum(1 for m in inbox.messages if address is None or m["To"] == address)


async def arrived(inbox: Inbox, address: str | None = None) -> int:
    """The emails to `address` (or anyone) once no more arrive for a second: the server
    mails off the request, after its answer (at most 15 s)."""
    count, still, deadline = to(inbox, address), 0.0, time.monotonic() + 15
    while still < 1.0 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = to(inbox, address)
        still = still + 0.1 if now == count else 0.0
        count = now
    return count


async def test_an_invitation_flood_is_refused_past_the_limits(
    backend: Backend, smtp: tuple[Inbox, int]
) -> None:
    """A fresh account sends 60 invitations at once to one address: MAIL_TO's 5 are
    mailed, 55 are 429s; then invitations to 30 other addresses: INVITES_BY's 20 in all."""
    inbox, port = smtp
    server = mailing_server(backend, port)
    make_account(backend.cli(), "owner@example.com")
    owner = Browser(server)
    try:
        assert (await owner.log_in("owner@example.com", PASSWORD)).status_code == 303
        await owner.get("/w/owner/members")
        flood = [{"email": "victim@example.com", "role": "viewer"}] * 60
        statuses = await raw_posts(owner, "/w/owner/members", flood)
        assert sorted(statuses) == [303] * MAIL_TO.limit + [429] * (60 - MAIL_TO.limit)
        assert await arrived(inbox, "victim@example.com") == MAIL_TO.limit
        page = await owner.post("/w/owner/members", flood[0])
        assert page.status_code == 429
        assert "This address was sent too many emails lately" in page.text

        spread = [{"email": f"p{i}@example.com", "role": "viewer"} for i in range(30)]
        statuses = await raw_posts(owner, "/w/owner/members", spread)
        assert statuses.count(303) == INVITES_BY.limit - MAIL_TO.limit
        assert set(statuses) == {303, 429}
        assert await arrived(inbox) == INVITES_BY.limit
        page = await owner.post("/w/owner/members", {"email": "q@example.com", "role": "viewer"})
        assert "You sent too many invitations lately" in page.text
    finally:
        await owner.aclose()
        server.close()


async def test_a_sign_up_flood_from_one_client_is_refused_past_the_limit(
    backend: Backend, smtp: tuple[Inbox, int]
) -> None:
    """Waves of 20 sign-ups at once from one client, each for a stranger's address:
    SIGNUPS_FROM's 10 accounts are made and mailed, then every one is a 429 (no account,
    no email)."""
    inbox, port = smtp
    server = mailing_server(backend, port)
    client = Browser(server)
    try:
        await client.get("/signup")
        made = 0
        for wave in range(10):  # until a whole wave is refused
            forms = [
                {"email": f"stranger{wave}-{i}@example.com", "password": PASSWORD}
                for i in range(20)
            ]
            statuses = await raw_posts(client, "/signup", forms)
            # 503: the node's password threads were busy (nothing made, nothing counted)
            assert set(statuses) <= {303, 429, 503}, statuses  # 303: on to "check your email"
            made += statuses.count(303)
            if set(statuses) == {429}:
                break
        assert set(statuses) == {429}
        assert made == SIGNUPS_FROM.limit
        assert await arrived(inbox) == SIGNUPS_FROM.limit
        page = await client.post("/signup", {"email": "late@example.com", "password": PASSWORD})
        assert page.status_code == 429
        assert "Too many sign-ups from your network" in page.text
        assert await arrived(inbox) == SIGNUPS_FROM.limit
    finally:
        await client.aclose()
        server.close()


async def test_forgot_is_refused_past_the_limits(backend: Backend, smtp: tuple[Inbox, int]) -> None:
    """40 "forgot password" requests at once for one account from one client: MAIL_FROM's
    30 are answered alike, the rest are 429s; the account gets MAIL_TO's 5 emails."""
    inbox, port = smtp
    server = mailing_server(backend, port)
    make_account(backend.cli(), "ann@example.com")
    client = Browser(server)
    try:
        await client.get("/forgot")
        statuses = await raw_posts(client, "/forgot", [{"email": "ann@example.com"}] * 40)
        assert sorted(statuses) == [303] * MAIL_FROM.limit + [429] * (40 - MAIL_FROM.limit)
        assert await arrived(inbox, "ann@example.com") == MAIL_TO.limit
        page = await client.post("/forgot", {"email": "nobody@example.com"})
        assert page.status_code == 429
        assert "Too many email requests from your network" in page.text
    finally:
        await client.aclose()
        server.close()
