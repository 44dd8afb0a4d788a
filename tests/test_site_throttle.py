"""Sign-in and mail limits on the website, in-process on every backend: a burst of
sign-ins checks at most the throttle's passwords, the node's password threads refuse
what they cannot take at once (and that costs the account nothing), and invitations,
sign-ups and /forgot stop mailing past their limits with a clear 429."""

from __future__ import annotations

import asyncio
import threading

import pytest
from conftest import BrowserFactory, Harness
from site_client import SiteClient, capture_mail, text

from tally import passwords
from tally.passwords import PasswordsBusy, PasswordWork
from tally.site.security import FormGate
from tally.throttle import INVITES_BY, LOGIN_ACCOUNT, MAIL_FROM, MAIL_TO, SIGNUPS_FROM
from tally.web.http import Message, Receive, Scope, Send


def mails(caplog: pytest.LogCaptureFixture, to: str | None = None) -> int:
    """Emails written to the log (no SMTP), to `to` or to anyone."""
    return sum(
        1
        for r in caplog.records
        if r.name == "tally.mail" and (to is None or r.getMessage().startswith(f"email to {to} "))
    )


async def test_a_burst_of_wrong_passwords_checks_at_most_the_accounts_five(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """200 wrong passwords at once for one account from one client: at most 5 are
    checked (LOGIN_ACCOUNT), the others answered 429 (or 503 while the node's password
    threads are busy) without a check; afterwards the account is locked."""
    await (await make_browser(harness)).sign_up("ann@example.com")
    attacker = await make_browser(harness, ip="203.0.113.9")
    await attacker.get("/login")
    before = passwords.work.verifications
    answers = await asyncio.gather(
        *(
            attacker.post("/login", {"email": "ann@example.com", "password": f"guess {i}"})
            for i in range(200)
        )
    )
    checked = passwords.work.verifications - before
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {401, 429, 503}
    assert checked == statuses.count(401)
    assert 1 <= checked <= LOGIN_ACCOUNT.limit
    assert statuses.count(429) >= 100
    for i in range(LOGIN_ACCOUNT.limit - checked):  # what the busy answers gave back
        assert (await attacker.log_in("ann@example.com", f"more {i}")).status_code == 401
    assert (await attacker.log_in("ann@example.com")).status_code == 429


async def test_the_right_password_within_the_allowance_signs_in(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """4 failures, then the right password: signed in, and the account's failures are
    cleared (5 more may fail before it locks)."""
    await (await make_browser(harness)).sign_up("ann@example.com")
    b = await make_browser(harness, ip="203.0.113.9")
    for _ in range(LOGIN_ACCOUNT.limit - 1):
        assert (await b.log_in("ann@example.com", "wrong password")).status_code == 401
    assert (await b.log_in("ann@example.com")).status_code == 303
    c = await make_browser(harness, ip="203.0.113.10")
    for _ in range(LOGIN_ACCOUNT.limit):
        assert (await c.log_in("ann@example.com", "wrong password")).status_code == 401
    assert (await c.log_in("ann@example.com")).status_code == 429


async def test_password_work_refuses_past_its_limit_at_once() -> None:
    """With its threads busy, a check is refused at once, before hashing; a hash whose
    request went away still holds its thread until it is done."""
    work = PasswordWork(limit=2)
    gate = threading.Event()
    started = [asyncio.ensure_future(work.run(gate.wait, verification=True)) for _ in range(2)]
    await asyncio.sleep(0.05)
    with pytest.raises(PasswordsBusy):
        await work.run(lambda: True, verification=True)
    assert (work.verifications, work.busy) == (2, 1)
    started[0].cancel()
    await asyncio.sleep(0.05)
    with pytest.raises(PasswordsBusy):  # the cancelled one's thread still hashes
        await work.run(lambda: True, verification=True)
    gate.set()
    await asyncio.gather(*started, return_exceptions=True)
    for _ in range(100):
        if work.in_flight == 0:
            break
        await asyncio.sleep(0.01)
    assert await work.run(lambda: 7, verification=False) == 7


async def test_a_busy_node_answers_503_and_the_attempt_costs_nothing(
    harness: Harness, make_browser: BrowserFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the password threads are all busy, a sign-in is a 503 that says so, and it
    is not counted against the account."""
    await (await make_browser(harness)).sign_up("ann@example.com")
    b = await make_browser(harness, ip="203.0.113.9")
    full = PasswordWork(limit=1)
    full.in_flight = 1
    monkeypatch.setattr(passwords, "work", full)
    for _ in range(LOGIN_ACCOUNT.limit + 2):
        r = await b.log_in("ann@example.com", "wrong password")
        assert r.status_code == 503
        assert "busy checking other passwords" in text(r)
    monkeypatch.setattr(passwords, "work", PasswordWork())
    assert (await b.log_in("ann@example.com")).status_code == 303


async def _owner(harness: Harness, make_browser: BrowserFactory, ip: str) -> SiteClient:
    b = await make_browser(harness, ip=ip)
    assert (await b.sign_up("owner@example.com")).status_code == 303
    account = await harness.store.find_account("owner@example.com")
    assert account is not None
    await harness.store.mark_verified(account.id, 0.0)
    return b


async def test_an_invitation_flood_stops_mailing(
    harness: Harness, make_browser: BrowserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """60 invitations to one address: MAIL_TO's 5 are sent, then each is refused with a
    429 saying why, and neither made nor mailed; other addresses until INVITES_BY's."""
    capture_mail(caplog)
    b = await _owner(harness, make_browser, "203.0.113.20")
    statuses = []
    for _ in range(60):
        r = await b.submit("/w/owner/members", {"email": "victim@example.com", "role": "viewer"})
        statuses.append(r.status_code)
    assert statuses == [303] * MAIL_TO.limit + [429] * (60 - MAIL_TO.limit)
    assert "This address was sent too many emails lately" in text(r)
    await harness.mail_sent()  # (email is sent off the request)
    assert mails(caplog, "victim@example.com") == MAIL_TO.limit
    ws = await harness.store.get_workspace("owner")
    assert ws is not None
    assert len(await harness.store.list_invites(ws.id, 0.0)) == MAIL_TO.limit
    sent = MAIL_TO.limit
    for i in range(INVITES_BY.limit):
        r = await b.submit("/w/owner/members", {"email": f"p{i}@example.com", "role": "viewer"})
        sent += r.status_code == 303
    assert sent == INVITES_BY.limit
    assert "You sent too many invitations lately" in text(r)
    await harness.mail_sent()
    assert mails(caplog) == 1 + INVITES_BY.limit  # and the owner's confirmation


async def test_a_sign_up_flood_from_one_client_stops_mailing(
    harness: Harness, make_browser: BrowserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """20 sign-ups from one client: SIGNUPS_FROM's are made (and mailed), the rest are
    refused with a 429 and make no account; another client still signs up."""
    capture_mail(caplog)
    statuses = []
    for i in range(20):
        b = await make_browser(harness, ip="203.0.113.30")
        statuses.append((await b.sign_up(f"stranger{i}@example.com")).status_code)
    assert statuses == [303] * SIGNUPS_FROM.limit + [429] * (20 - SIGNUPS_FROM.limit)
    await harness.mail_sent()
    assert mails(caplog) == SIGNUPS_FROM.limit
    assert await harness.store.find_account("stranger19@example.com") is None
    r = await (await make_browser(harness, ip="203.0.113.30")).sign_up("late@example.com")
    assert "Too many sign-ups from your network" in text(r)
    elsewhere = await make_browser(harness, ip="203.0.113.31")
    assert (await elsewhere.sign_up("other@example.com")).status_code == 303


async def test_forgot_is_limited_per_client_whether_the_account_exists_or_not(
    harness: Harness, make_browser: BrowserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """/forgot from one client: MAIL_FROM's requests are answered alike, then a 429,
    for an existing address and an unknown one the same; the account gets at most
    MAIL_TO's emails."""
    capture_mail(caplog)
    await (await make_browser(harness, ip="203.0.113.40")).sign_up("ann@example.com")
    b = await make_browser(harness, ip="203.0.113.41")
    statuses = []
    for i in range(MAIL_FROM.limit + 2):
        email = "ann@example.com" if i % 2 else f"nobody{i}@example.com"
        statuses.append((await b.submit("/forgot", {"email": email})).status_code)
    assert statuses == [303] * MAIL_FROM.limit + [429, 429]
    r = await b.submit("/forgot", {"email": "ann@example.com"})
    assert "Too many email requests from your network" in text(r)
    await harness.mail_sent()
    # the confirmation only: without SMTP no reset link is made at all (the log names
    # `tally user reset-password`); tests/e2e/test_abuse_mail.py mails resets for real
    assert mails(caplog, "ann@example.com") == 1


async def test_the_form_gate_lets_a_few_posts_in_at_once() -> None:
    """POSTs run at most `at_once` at a time, the others wait their turn (GETs pass);
    past `waiting` waiting, a POST is a 503 at once."""
    running, most = 0, 0
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        if scope["method"] == "POST":
            await release.wait()
        running -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    gate = FormGate(app, at_once=2, waiting=3)
    sent: list[int] = []

    async def call(method: str) -> None:
        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent.append(message["status"])

        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        await gate(
            {"type": "http", "method": method, "path": "/login", "headers": []}, receive, send
        )

    posts = [asyncio.ensure_future(call("POST")) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert most == 2
    await call("GET")  # not gated
    await call("POST")  # 2 running, 3 waiting: refused
    assert sent == [200, 503]
    release.set()
    await asyncio.gather(*posts)
    assert sent.count(200) == 6
    assert most <= 3  # the 2 POSTs and the GET
