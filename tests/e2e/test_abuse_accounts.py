"""Attacks on the dashboard's accounts against a real `tally serve` with a real SMTP
server (aiosmtpd on loopback), on SQLite and on PostgreSQL + Redis: a forged Host header
never reaches a mailed link, and neither sign-up nor "forgot password" tells by its page
or its time which addresses have an account (issue 20, items 3 and 5)."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from services import require_redis
from smtp_inbox import Inbox, smtp_server, smtp_settings

from .server import ServerError, TallyServer

pytestmark = [pytest.mark.e2e, pytest.mark.abuse]

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
SLOW_SMTP = 0.5  # seconds the mail server takes over each message
PUBLIC = "http://tally.test"
MAIL_WAIT = 20.0


def smtp_env(port: int) -> dict[str, str]:
    return {f"TALLY_{k.upper()}": str(v) for k, v in smtp_settings(port).items()}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def mailing_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TallyServer, Inbox]]:
    """A real server whose mail goes to a slow SMTP server on loopback."""
    env = {"TALLY_RATE_LIMIT": "off"}
    if request.param == "postgresql":
        env["TALLY_REDIS_URL"] = require_redis()
        # a prefix of this test's own (deleted at teardown): not one another worker or
        # another run of the suite on this Redis can have
        env["TALLY_REDIS_PREFIX"] = str(request.getfixturevalue("redis_prefix"))
    url = str(request.getfixturevalue("postgres_url")) if request.param == "postgresql" else None
    with smtp_server(delay=SLOW_SMTP) as (inbox, port):
        server = TallyServer(tmp_path, database_url=url, env={**env, **smtp_env(port)})
        server.start()
        try:
            yield server, inbox
        finally:
            server.close()


def post_form(
    client: httpx.Client, path: str, data: dict[str, str], host: str | None = None
) -> tuple[httpx.Response, float]:
    """GET the form's page (its CSRF token), then POST it; the answer and its seconds."""
    headers = {"host": host} if host else {}
    page = client.get(path, headers=headers)
    found = CSRF_RE.search(page.text)
    assert found, page.text
    started = time.monotonic()
    r = client.post(path, data={**data, "csrf_token": found.group(1)}, headers=headers)
    return r, time.monotonic() - started


def wait_for_mail(inbox: Inbox, to: str, subject: str) -> str:
    deadline = time.monotonic() + MAIL_WAIT
    while time.monotonic() < deadline:
        for message in inbox.messages:
            if message["To"] == to and message["Subject"] == subject:
                body = message.get_payload(decode=True)
                assert isinstance(body, bytes)
                return body.decode()
        time.sleep(0.05)
    raise AssertionError(f"no email {subject!r} to {to} within {MAIL_WAIT} s")


def test_smtp_without_a_public_url_does_not_start(tmp_path: Path) -> None:
    """`tally serve` with SMTP set and no TALLY_PUBLIC_URL exits, saying why."""
    server = TallyServer(tmp_path, env={"TALLY_SMTP_HOST": "127.0.0.1"})
    with pytest.raises(ServerError, match="TALLY_PUBLIC_URL"):
        server.start(timeout=10)
    server.close()


def test_a_forged_host_never_reaches_a_mailed_link(
    mailing_server: tuple[TallyServer, Inbox],
) -> None:
    """A reset asked for with `Host: attacker.example` mails a link to TALLY_PUBLIC_URL."""
    server, inbox = mailing_server
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=30) as client:
        r, _ = post_form(
            client, "/signup", {"email": "ann@example.com", "password": "a long one 42"}
        )
        assert r.status_code == 303
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=30) as attacker:
        r, _ = post_form(attacker, "/forgot", {"email": "ann@example.com"}, "attacker.example")
        assert r.status_code == 303
    body = wait_for_mail(inbox, "ann@example.com", "Reset your Tally password")
    assert "attacker.example" not in body
    assert f"{PUBLIC}/reset/" in body


def test_pages_do_not_tell_which_addresses_have_accounts(
    mailing_server: tuple[TallyServer, Inbox],
) -> None:
    """ "Forgot password" answers a known and an unknown address alike, in the same time,
    whatever the mail server takes (before: the mail was sent in the request, ~180 ms
    more for a known address); sign-up answers a taken and a free address alike, and the
    taken one's owner gets a note by email."""
    server, inbox = mailing_server
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=30) as client:
        r, _ = post_form(
            client, "/signup", {"email": "ann@example.com", "password": "a long one 42"}
        )
        assert r.status_code == 303
        client.cookies.clear()
        timings: dict[str, list[float]] = {"ann@example.com": [], "nobody@example.com": []}
        pages: dict[str, str] = {}
        for _ in range(3):  # 1 confirmation + 3 resets + the note: ann's 5 emails an hour
            for email in timings:
                r, seconds = post_form(client, "/forgot", {"email": email})
                assert r.status_code == 303
                timings[email].append(seconds)
                page = client.get(r.headers["location"])  # Post/Redirect/Get
                pages[email] = r.headers["location"] + page.text.replace(email, "EMAIL")
        assert pages["ann@example.com"] == pages["nobody@example.com"]
        medians = {email: statistics.median(t) for email, t in timings.items()}
        assert max(medians.values()) < SLOW_SMTP / 2, medians
        answers = {}
        for email in ("ann@example.com", "bob@example.com"):
            client.cookies.clear()
            r, _ = post_form(client, "/signup", {"email": email, "password": "a long one 43"})
            answers[email] = (
                r.status_code,
                r.headers["location"],
                client.get(r.headers["location"]).text.replace(email, "EMAIL"),
                "set-cookie" in r.headers and "tally_session" in r.headers["set-cookie"],
            )
        assert answers["ann@example.com"] == answers["bob@example.com"]
    wait_for_mail(inbox, "ann@example.com", "Your Tally account")
    wait_for_mail(inbox, "bob@example.com", "Confirm your email for Tally")
