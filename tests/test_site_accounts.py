"""The website's account forms, in-process on every backend: sign-up, email verification,
sign-in and its throttle, sessions, password change and reset, CSRF, headers, cookies."""

from __future__ import annotations

import re
import time
from urllib.parse import unquote

import pytest
from argon2.profiles import RFC_9106_LOW_MEMORY
from conftest import BrowserFactory, Harness, HarnessFactory
from site_client import (
    STRONG,
    SiteClient,
    capture_mail,
    mailed_links,
    mailed_links_soon,
    path_of,
    text,
)
from smtp_inbox import Inbox, smtp_settings

from tally import passwords
from tally.accounts import Accounts
from tally.config import parse_networks
from tally.links import secret_hash
from tally.mail import Mailer
from tally.site.security import CSRF_COOKIE


async def test_passwords_use_argon2id_at_the_recommended_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What production hashes with (the other tests hash cheaply, see tests/conftest.py):
    argon2id at the library's recommended cost, and the hash checked for an unknown
    account has the same cost, so a sign-in takes as long either way."""
    monkeypatch.undo()  # back to the real hasher
    real = passwords._hasher
    expected = RFC_9106_LOW_MEMORY  # PasswordHasher()'s defaults
    assert (real.type, real.memory_cost, real.time_cost, real.parallelism) == (
        expected.type,
        expected.memory_cost,
        expected.time_cost,
        expected.parallelism,
    )
    stored = await passwords.hash_password(STRONG)
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert (await passwords.dummy_hash()).startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert await passwords.verify_password(stored, STRONG)
    assert not await passwords.verify_password(stored, STRONG + "x")


async def test_sign_up_verify_and_land_in_a_personal_workspace(
    harness: Harness, make_browser: BrowserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Sign-up makes the account and its workspace and says to check the email (no
    session: the page must not tell a new address from a taken one); the confirmation
    link is logged (no SMTP); following it confirms the email; signed in, the account
    lands in its workspace."""
    capture_mail(caplog)
    b = await make_browser(harness)
    posted = await b.submit("/signup", {"email": "Ann.Lee@Example.com", "password": STRONG})
    assert posted.status_code == 303  # Post/Redirect/Get: a reload signs up nobody twice
    assert "Ann.Lee" not in posted.headers["location"]
    assert "tally_session" not in posted.headers.get("set-cookie", "")
    r = await b.follow(posted)
    assert "tally_session" not in r.headers.get("set-cookie", "")
    assert "This server sends no email" in text(r)
    assert "Ann.Lee@Example.com" in text(r)
    assert 'id="signup-sent"' not in (await b.get("/signup")).text  # shown once
    assert (await b.log_in("ann.lee@example.com")).status_code == 303
    assert (await b.get("/")).headers["location"] == "/w/ann-lee"
    page = await b.get("/w/ann-lee")
    assert page.status_code == 200
    assert "Confirm your email address" in text(page)
    assert "this server sends no email, so the link is in the server's log" in text(page)
    assert "we sent" not in text(page)
    account = await harness.store.find_account("ann.lee@example.com")
    assert account is not None
    assert not account.verified
    [link] = await mailed_links_soon(caplog, "verify")
    done = await b.get(path_of(link))
    assert done.status_code == 303
    account = await harness.store.find_account("ann.lee@example.com")
    assert account is not None
    assert account.verified
    again = await b.get(path_of(link))
    assert again.status_code == 200  # single use: it says the address is confirmed already
    assert "is confirmed already" in " ".join(re.sub(r"<[^>]+>", "", text(again)).split())
    assert "invalid" not in text(again)
    assert 'href="/" class="button primary">Go to your workspaces' in again.text  # a way on


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("not-an-email", STRONG, "valid email address"),
        ("a@b", STRONG, "valid email address"),
        ("ann@example.com", "short1", "at least 10 characters"),
        ("ann@example.com", "qwertyuiop", "too common"),
        ("ann@example.com", "ann@example.com", "must not be your email"),
    ],
)
async def test_sign_up_refuses_bad_input_and_creates_nothing(
    harness: Harness, make_browser: BrowserFactory, email: str, password: str, message: str
) -> None:
    """A bad email or a weak password re-renders the form with the reason; no account."""
    b = await make_browser(harness)
    r = await b.sign_up(email, password)
    assert r.status_code == 400
    assert message in text(r)
    assert email in text(r) or "@" not in email
    assert await harness.store.count_accounts() == 0


async def test_a_taken_email_gets_the_same_answer_and_its_account_a_note(
    make_harness: HarnessFactory, make_browser: BrowserFactory, smtp: tuple[Inbox, int]
) -> None:
    """A second sign-up with the same email in other letters makes no account and is
    answered exactly as a new one (before: "An account with this email exists"); the
    existing account is mailed a note saying how to sign in or reset instead."""
    inbox, port = smtp
    harness = await make_harness(**smtp_settings(port))
    await (await make_browser(harness)).sign_up("ann@example.com")
    b_new, b_taken = await make_browser(harness), await make_browser(harness)
    new = await b_new.submit("/signup", {"email": "bob@example.com", "password": STRONG})
    taken = await b_taken.submit(
        "/signup", {"email": "ANN@example.com", "password": "another long one 7"}
    )
    assert new.status_code == taken.status_code == 303
    assert new.headers["location"] == taken.headers["location"]
    new, taken = await b_new.follow(new), await b_taken.follow(taken)
    assert new.status_code == taken.status_code == 200
    assert text(new).replace("bob@example.com", "X") == text(taken).replace("ANN@example.com", "X")
    assert "exists" not in text(taken)
    assert await harness.store.count_accounts() == 2
    note = await inbox.wait_for("ann@example.com", "Your Tally account")
    body = note.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert b"http://tally.test/forgot" in body
    await harness.mail_sent()
    # the account keeps its password
    assert (await (await make_browser(harness)).log_in("ann@example.com")).status_code == 303


@pytest.mark.parametrize("csrf", ["", "0" * 64, "wrong", "é" * 64])
async def test_forms_without_the_right_csrf_token_are_refused(
    harness: Harness, make_browser: BrowserFactory, csrf: str
) -> None:
    """A missing or wrong CSRF token is a 403 and changes nothing."""
    b = await make_browser(harness)
    await b.get("/signup")
    r = await b.post("/signup", {"email": "ann@example.com", "password": STRONG}, csrf=csrf)
    assert r.status_code == 403
    assert "form expired or came from another site" in text(r)
    assert await harness.store.count_accounts() == 0


@pytest.mark.parametrize("raw", [b"%ED%B3%BF", b"%FF%FE", b"%C3%A9" * 64])
async def test_a_csrf_token_that_is_no_text_is_refused(
    harness: Harness, make_browser: BrowserFactory, raw: bytes
) -> None:
    """A token of bytes that are no UTF-8, or of non-ASCII text, is the 403 of a wrong
    one (hmac.compare_digest raises on a non-ASCII str: that was a 500)."""
    b = await make_browser(harness)
    await b.get("/signup")
    body = b"email=ann%40example.com&password=x&csrf_token=" + raw
    headers = {"content-type": "application/x-www-form-urlencoded"}
    r = await b.client.post("/signup", content=body, headers=headers)
    assert r.status_code == 403
    assert await harness.store.count_accounts() == 0


async def test_a_csrf_token_of_another_browser_is_refused(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """The token is bound to the browser's own cookie: another browser's is useless."""
    attacker, victim = await make_browser(harness), await make_browser(harness)
    await attacker.get("/signup")
    await victim.get("/signup")
    r = await victim.post(
        "/signup", {"email": "ann@example.com", "password": STRONG}, csrf=attacker.csrf
    )
    assert r.status_code == 403


def planted(b: SiteClient, value: str) -> None:
    """A tally_csrf cookie set in `b` from outside (a sibling domain can set one)."""
    b.client.cookies.set(CSRF_COOKIE, value, domain="tally.test")


async def test_a_csrf_token_minted_before_sign_in_fails_after(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """An attacker who planted his own tally_csrf cookie in the victim's browser, and
    holds the token the site gave him for it while signed out, cannot forge a form of
    the signed-in victim: once signed in, the token is bound to the session."""
    attacker, victim = await make_browser(harness), await make_browser(harness)
    await attacker.get("/login")
    cookie = attacker.client.cookies[CSRF_COOKIE]
    minted = attacker.csrf  # signed out, for that cookie
    planted(victim, cookie)
    await victim.sign_up("ann@example.com")
    assert victim.client.cookies[CSRF_COOKIE] == cookie
    forged = {"name": "forged", "visibility": "public"}
    r = await victim.post("/w/ann/counters/new", forged, csrf=minted)
    assert r.status_code == 403
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    assert await harness.store.list_counters(ws.id) == []
    # the same browser's pages, signed in, carry the session's token, which works
    r = await victim.submit("/w/ann/counters/new", forged)
    assert r.status_code == 303
    assert victim.csrf != minted


async def test_a_csrf_token_of_a_session_dies_with_it(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """Signing out invalidates the tokens of the session; one of another session (the
    same browser, signed in again, or as someone else) does not pass either."""
    b = await make_browser(harness)
    await b.sign_up("ann@example.com")
    await b.get("/account")
    first = b.csrf
    assert (await b.post("/logout", {})).status_code == 303
    r = await b.post("/login", {"email": "ann@example.com", "password": STRONG}, csrf=first)
    assert r.status_code == 403
    await b.log_in("ann@example.com")
    await b.get("/account")
    assert b.csrf != first
    r = await b.post("/w/ann/counters/new", {"name": "x", "visibility": "public"}, csrf=first)
    assert r.status_code == 403
    r = await b.post("/w/ann/counters/new", {"name": "x", "visibility": "public"})
    assert r.status_code == 303


async def test_log_in_out_and_wrong_password(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """Sign-in with the right password works in any email case; a wrong one says so."""
    await (await make_browser(harness)).sign_up("ann@example.com")
    b = await make_browser(harness)
    bad = await b.log_in("ann@example.com", "not the password")
    assert bad.status_code == 401
    assert "Wrong email or password" in text(bad)
    nobody = await b.log_in("bob@example.com")
    assert nobody.status_code == 401
    assert "Wrong email or password" in text(nobody)
    ok = await b.log_in("ANN@example.com")
    assert ok.status_code == 303
    assert (await b.get("/account")).status_code == 200
    out = await b.post("/logout")
    assert out.status_code == 303
    r = await b.get("/account")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login")


async def test_log_in_redirects_only_to_local_paths(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """`next` after sign-in is followed for a local path, never to another site."""
    await (await make_browser(harness)).sign_up("ann@example.com")
    b = await make_browser(harness)
    await b.get("/login")
    r = await b.post(
        "/login", {"email": "ann@example.com", "password": STRONG, "next": "//evil.example/"}
    )
    assert r.headers["location"] == "/"
    await b.get("/login")
    r = await b.post("/login", {"email": "ann@example.com", "password": STRONG, "next": "/account"})
    assert r.headers["location"] == "/account"


async def test_failed_sign_ins_are_throttled_per_account_and_per_ip(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """5 failures lock the account for a while (even with the right password, from anywhere);
    20 failures from one IP lock that IP, whatever the account."""
    await (await make_browser(harness)).sign_up("ann@example.com")
    b = await make_browser(harness, ip="203.0.113.1")
    for _ in range(5):
        assert (await b.log_in("ann@example.com", "wrong password")).status_code == 401
    locked = await b.log_in("ann@example.com")
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in text(locked)
    elsewhere = await make_browser(harness, ip="203.0.113.2")
    assert (await elsewhere.log_in("ann@example.com")).status_code == 429
    await (await make_browser(harness)).sign_up("bob@example.com")
    c = await make_browser(harness, ip="203.0.113.3")
    for i in range(20):
        assert (await c.log_in(f"x{i}@example.com", "wrong password")).status_code == 401
    assert (await c.log_in("bob@example.com")).status_code == 429
    other_ip = await make_browser(harness, ip="203.0.113.4")
    assert (await other_ip.log_in("bob@example.com")).status_code == 303


async def test_failed_sign_ins_are_throttled_per_ipv6_network(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """20 failures from 20 addresses of one IPv6 /64 lock that /64 (TALLY_IPV6_PREFIX),
    not the next one."""
    await (await make_browser(harness)).sign_up("bob@example.com")
    for i in range(20):
        b = await make_browser(harness, ip=f"2001:db8:5:6::{i + 1:x}")
        assert (await b.log_in(f"x{i}@example.com", "wrong password")).status_code == 401
    same = await make_browser(harness, ip="2001:db8:5:6:ffff::1")
    assert (await same.log_in("bob@example.com")).status_code == 429
    other = await make_browser(harness, ip="2001:db8:5:7::1")
    assert (await other.log_in("bob@example.com")).status_code == 303


async def test_expired_and_revoked_sessions_sign_out(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """An expired session cookie, or one ended by "sign out everywhere", is no session."""
    first = await make_browser(harness)
    await first.sign_up("ann@example.com")
    second = await make_browser(harness)
    await second.log_in("ann@example.com")
    assert (await second.get("/account")).status_code == 200
    await first.get("/account")
    assert (await first.post("/logout-everywhere")).status_code == 303
    assert (await second.get("/account")).status_code == 303
    assert (await first.get("/account")).status_code == 303
    # a session whose time is up
    account = await harness.store.find_account("ann@example.com")
    assert account is not None
    now = time.time()
    await harness.store.create_session(secret_hash("old-session"), account.id, now - 100, now - 1)
    third = await make_browser(harness)
    third.client.cookies.set("tally_session", "old-session")
    assert (await third.get("/account")).status_code == 303


async def test_change_password(harness: Harness, make_browser: BrowserFactory) -> None:
    """A wrong current password or a weak new one is refused; a change signs out the
    other devices and keeps this one signed in."""
    b = await make_browser(harness)
    await b.sign_up("ann@example.com")
    other = await make_browser(harness)
    await other.log_in("ann@example.com")
    wrong = await b.submit(
        "/account", {"current_password": "nope nope nope", "new_password": "another long one 7"}
    )
    assert wrong.status_code == 400
    assert "current password is wrong" in text(wrong)
    weak = await b.submit("/account", {"current_password": STRONG, "new_password": "password1"})
    assert weak.status_code == 400
    ok = await b.submit(
        "/account", {"current_password": STRONG, "new_password": "another long one 7"}
    )
    assert ok.status_code == 303
    assert (await b.get("/account")).status_code == 200
    assert (await other.get("/account")).status_code == 303
    fresh = await make_browser(harness)
    assert (await fresh.log_in("ann@example.com")).status_code == 401
    assert (await fresh.log_in("ann@example.com", "another long one 7")).status_code == 303


async def test_forgot_and_reset_password(
    make_harness: HarnessFactory, make_browser: BrowserFactory, smtp: tuple[Inbox, int]
) -> None:
    """The reset link is mailed for a known email only, the page answers the same either
    way, the link sets a new password once, and is spent after."""
    inbox, port = smtp
    harness = await make_harness(**smtp_settings(port))
    await (await make_browser(harness)).sign_up("ann@example.com")
    b = await make_browser(harness)
    unknown = await b.submit("/forgot", {"email": "nobody@example.com"})
    assert unknown.status_code == 303
    unknown_page = await b.follow(unknown)
    known = await b.submit("/forgot", {"email": "ann@example.com"})
    assert known.status_code == 303
    assert unknown.headers["location"] == known.headers["location"] == "/forgot"
    unknown, known = unknown_page, await b.follow(known)
    assert text(unknown).replace("nobody@", "X@") == text(known).replace("ann@", "X@")
    assert "If an account exists" in text(known)
    await harness.mail_sent()
    assert [m["To"] for m in inbox.messages if "Reset" in m["Subject"]] == ["ann@example.com"]
    link = inbox.link("ann@example.com", "reset")
    assert (await b.get(link)).status_code == 200
    weak = await b.post(link, {"new_password": "123"})
    assert weak.status_code == 400
    done = await b.submit(link, {"new_password": "brand new secret 9"})
    assert done.status_code == 303
    assert (await b.get(link)).status_code == 400
    again = await b.submit(link, {"new_password": "another new one 10"})
    assert again.status_code == 400
    fresh = await make_browser(harness)
    assert (await fresh.log_in("ann@example.com")).status_code == 401
    assert (await fresh.log_in("ann@example.com", "brand new secret 9")).status_code == 303


@pytest.mark.parametrize("email", ["", "not an email", "ann@example.com\nfake log line"])
async def test_forgot_refuses_what_is_no_email_address(
    harness: Harness, make_browser: BrowserFactory, caplog: pytest.LogCaptureFixture, email: str
) -> None:
    """What is no email address is a 400 with the reason, queues nothing, logs nothing."""
    capture_mail(caplog)
    b = await make_browser(harness)
    r = await b.submit("/forgot", {"email": email})
    assert r.status_code == 400
    assert "valid email address" in text(r)
    await harness.mail_sent()
    assert [rec for rec in caplog.records if rec.name == "tally.mail"] == []


async def test_without_smtp_a_reset_says_to_ask_the_operator(
    harness: Harness, make_browser: BrowserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Without SMTP no reset link is made (before: one went to the log, where the text
    formatter redacted it, and a log shipped elsewhere is no place for one): the page,
    and the log, say to run `tally user reset-password EMAIL`."""
    capture_mail(caplog)
    await (await make_browser(harness)).sign_up("ann@example.com")
    b = await make_browser(harness)
    page = await b.get("/forgot")
    assert "tally user reset-password EMAIL" in text(page)
    r = await b.submit("/forgot", {"email": "ann@example.com"})
    assert r.status_code == 303
    r = await b.follow(r)
    assert "tally user reset-password ann@example.com" in text(r)
    await harness.mail_sent()
    assert mailed_links(caplog, "reset") == []
    assert any(
        rec.levelname == "WARNING" and "`tally user reset-password ann@example.com`" in rec.message
        for rec in caplog.records
    )


async def test_outstanding_reset_links_die_with_the_password(
    make_harness: HarnessFactory, make_browser: BrowserFactory, smtp: tuple[Inbox, int]
) -> None:
    """Every reset link asked for before a reset, a password change or the operator's
    reset is dead after it; a rehash at sign-in (the same password) keeps them."""
    inbox, port = smtp
    harness = await make_harness(**smtp_settings(port))
    b = await make_browser(harness)
    await b.sign_up("ann@example.com")
    stranger = await make_browser(harness)
    first = second = ""
    for _ in range(2):
        assert (await stranger.submit("/forgot", {"email": "ann@example.com"})).status_code == 303
        await harness.mail_sent()
        first, second = second, inbox.link("ann@example.com", "reset")
    done = await stranger.submit(first, {"new_password": "brand new secret 9"})
    assert done.status_code == 303
    assert (await stranger.get(second)).status_code == 400
    late = await stranger.post(second, {"new_password": "the attacker's own 1"})
    assert late.status_code == 400
    account = await harness.store.find_account("ann@example.com")
    assert account is not None

    async def link(name: str) -> str:  # as /forgot makes one, without the mail limit
        now = time.time()
        await harness.store.create_one_time(
            "reset", secret_hash(name), now, now + 3600, account_id=account.id
        )
        assert (await stranger.get(f"/reset/{name}")).status_code == 200
        return f"/reset/{name}"

    # a link asked for before a password change
    third = await link("third")
    await b.log_in("ann@example.com", "brand new secret 9")
    changed = await b.submit(
        "/account", {"current_password": "brand new secret 9", "new_password": "changed again 11"}
    )
    assert changed.status_code == 303
    assert (await stranger.get(third)).status_code == 400
    # the operator's reset (tally user reset-password) goes the same way
    fourth = await link("fourth")
    accounts = Accounts(harness.store, Mailer(harness.app.settings))  # as the CLI makes it
    await accounts.set_password(account, "operator set 12")
    assert (await stranger.get(fourth)).status_code == 400
    # a rehash at sign-in keeps the password, and the links asked for with it
    fifth = await link("fifth")
    fresh = await harness.store.get_account(account.id)
    assert fresh is not None
    await harness.store.set_password(account.id, fresh.password_hash, time.time(), rehash=True)
    assert (await stranger.get(fifth)).status_code == 200


async def test_a_reset_link_expires(harness: Harness, make_browser: BrowserFactory) -> None:
    """A reset link past its time is refused."""
    await (await make_browser(harness)).sign_up("ann@example.com")
    account = await harness.store.find_account("ann@example.com")
    assert account is not None
    now = time.time()
    await harness.store.create_one_time(
        "reset", secret_hash("stale"), now - 7200, now - 3600, account_id=account.id
    )
    b = await make_browser(harness)
    assert (await b.get("/reset/stale")).status_code == 400
    r = await b.post("/reset/stale", {"new_password": "brand new secret 9"})
    assert r.status_code == 400


INVITE_RE = re.compile(r'<code id="invite-link">[^<]*/invite/([A-Za-z0-9_-]+)</code>')


@pytest.mark.parametrize("mode", ["open", "invite", "closed"])
async def test_sign_up_modes(
    make_harness: HarnessFactory, make_browser: BrowserFactory, mode: str
) -> None:
    """TALLY_SIGNUP: `open` lets anyone sign up; `invite` only through an invitation, for
    its address; `closed` nobody, not even with an invitation (before: it made the
    account), while an existing account still accepts one, and the operator still
    creates accounts."""
    harness = await make_harness(signup=mode)
    accounts = Accounts(harness.store, Mailer(harness.app.settings), mode)
    await accounts.create_by_operator("owner@example.com", "owner password 1", True)
    await accounts.create_by_operator("old@example.com", "old password 12", True)
    owner = await make_browser(harness)
    await owner.log_in("owner@example.com", "owner password 1")

    async def invitation(email: str) -> str:
        r = await owner.follow(
            await owner.submit("/w/owner/members", {"email": email, "role": "viewer"})
        )
        match = INVITE_RE.search(r.text)
        assert match, r.text
        return match.group(1)

    plain = await (await make_browser(harness)).sign_up("ann@example.com")
    assert plain.status_code == (303 if mode == "open" else 403)
    secret = await invitation("eve@example.com")
    eve = await make_browser(harness)
    page = await eve.get(f"/signup?invite={secret}")
    assert ('name="password"' in page.text) == (mode != "closed")
    r = await eve.submit(
        f"/signup?invite={secret}",
        {"email": "eve@example.com", "password": "eve password 12", "invite": secret},
        action="/signup",
    )
    assert r.status_code == (403 if mode == "closed" else 303)
    eve_account = await harness.store.find_account("eve@example.com")
    assert (eve_account is None) == (mode == "closed")
    # an existing account accepts an invitation in every mode
    secret = await invitation("old@example.com")
    old = await make_browser(harness)
    await old.log_in("old@example.com", "old password 12")
    await old.get(f"/invite/{secret}")
    assert (await old.post(f"/invite/{secret}")).headers["location"] == "/w/owner"
    expected = {"open": 4, "invite": 3, "closed": 2}[mode]
    assert await harness.store.count_accounts() == expected


async def test_the_first_account_owns_the_bootstrap_workspace(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """The workspace `default` (made by the first start) belongs to the first account only,
    which is signed in at once and taken there, where the Quick start counted (before: it
    signed in again by hand); the second is not signed in by its sign-up, whose page
    reads the same whether its address was free or taken."""
    default = await harness.workspace("default")
    first = await make_browser(harness)
    r = await first.submit("/signup", {"email": "first@example.com", "password": STRONG})
    assert r.status_code == 303
    assert r.headers["location"] == "/w/default"
    assert any(c.startswith("tally_session=") for c in r.headers.get_list("set-cookie"))
    page = await first.get("/w/default")
    assert page.status_code == 200
    assert "Welcome: first@example.com owns the workspace default." in text(page)
    second = await make_browser(harness)
    r = await second.submit("/signup", {"email": "second@example.com", "password": STRONG})
    assert r.status_code == 303
    assert r.headers["location"] == "/signup"
    assert not any(c.startswith("tally_session=") for c in r.headers.get_list("set-cookie"))
    members = await harness.store.list_members(default.id)
    assert [(m.email, m.role.label) for m in members] == [("first@example.com", "owner")]


async def test_security_headers_and_cookie_flags(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """Every page has the CSP (no inline scripts), frame-ancestors 'none', Referrer-Policy
    and nosniff; cookies are HttpOnly and SameSite=Lax, not Secure over plain http."""
    b = await make_browser(harness)
    r = await b.get("/login")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["referrer-policy"] == "same-origin"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in r.text
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie
    signup = await b.sign_up("ann@example.com")
    session_cookie = next(
        c for c in signup.headers.get_list("set-cookie") if c.startswith("tally_session=")
    )
    assert "HttpOnly" in session_cookie
    assert "SameSite=lax" in session_cookie or "samesite=lax" in session_cookie.lower()


async def test_cookies_are_secure_behind_a_trusted_https_proxy(
    make_harness: HarnessFactory, make_browser: BrowserFactory
) -> None:
    """X-Forwarded-Proto: https from a trusted proxy makes the cookies Secure; from an
    untrusted peer it is ignored."""
    harness = await make_harness(trusted_proxies=parse_networks("198.51.100.0/24"))
    proxied = await make_browser(harness)
    r = await proxied.get("/login", headers={"x-forwarded-proto": "https"})
    assert "secure" in r.headers["set-cookie"].lower()
    stranger = await make_browser(harness, ip="203.0.113.9")
    r = await stranger.get("/login", headers={"x-forwarded-proto": "https"})
    assert "secure" not in r.headers["set-cookie"].lower()


async def test_static_files_and_the_website_404(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """The vendored scripts are served by Tally; an unknown page is the website's 404."""
    b = await make_browser(harness)
    for path in (
        "/static/vendor/htmx.min.js",
        "/static/vendor/chart.umd.min.js",
        "/static/site.js",
    ):
        r = await b.get(path)
        assert r.status_code == 200, path
    r = await b.get("/no/such/page")
    assert r.status_code == 404
    assert "Not found" in r.text


async def test_confirmation_and_reset_emails_are_limited_per_account(
    make_harness: HarnessFactory, make_browser: BrowserFactory, smtp: tuple[Inbox, int]
) -> None:
    """At most 5 confirmation or reset emails an hour go to one account, whoever asks."""
    inbox, port = smtp
    harness = await make_harness(**smtp_settings(port))
    b = await make_browser(harness)
    await b.sign_up("ann@example.com")  # 1
    for _ in range(3):  # 2, 3, 4
        await b.get("/account")
        assert (await b.post("/verify/resend")).status_code == 303
    other = await make_browser(harness)
    for _ in range(4):  # 5, then refused
        assert (await other.submit("/forgot", {"email": "ann@example.com"})).status_code == 303
    await harness.mail_sent()
    subjects = [m["Subject"] for m in inbox.messages]
    assert subjects.count("Confirm your email for Tally") == 4
    assert subjects.count("Reset your Tally password") == 1
    await b.get("/account")
    r = await b.post("/verify/resend")
    assert "several links" in unquote(r.headers["set-cookie"])


async def test_an_expired_confirmation_link_offers_a_new_one(
    harness: Harness, make_browser: BrowserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """An expired confirmation link says so and has a button for a new link (before: "invalid,
    used or expired", sign in and find the account page): a CSRF-checked POST that mails
    a new link to the account's address, within the mail limits (MAIL_TO: 5 an hour,
    the sign-up's included), then 429 with nothing sent; a link that names no
    unconfirmed account sends nothing."""
    capture_mail(caplog)
    await (await make_browser(harness)).sign_up("ann@example.com")
    await mailed_links_soon(caplog, "verify")
    account = await harness.store.find_account("ann@example.com")
    assert account is not None
    now = time.time()
    await harness.store.create_one_time(
        "verify",
        secret_hash("expired-link-0123456789"),
        now - 4 * 86400,
        now - 86400,
        account_id=account.id,
    )
    stranger = await make_browser(harness)  # signed out: the link came by email
    page = await stranger.get("/verify/expired-link-0123456789")
    assert page.status_code == 410
    assert "This link has expired" in text(page)
    assert 'action="/verify/expired-link-0123456789/resend"' in page.text
    forged = await stranger.post("/verify/expired-link-0123456789/resend", csrf="")
    assert forged.status_code == 403
    statuses = []
    for _ in range(5):
        await stranger.get("/verify/expired-link-0123456789")
        r = await stranger.post("/verify/expired-link-0123456789/resend")
        statuses.append(r.status_code)
    assert statuses == [303] * 4 + [429]
    assert "We sent several links to this address" in text(r)
    links = await mailed_links_soon(caplog, "verify", 5)
    await harness.mail_sent()
    assert len(mailed_links(caplog, "verify")) == 5  # the sign-up's and 4 new ones
    # a new link confirms; the expired one then reads "already confirmed"
    assert (await stranger.get(path_of(links[-1]))).status_code == 303
    confirmed = await stranger.get("/verify/expired-link-0123456789")
    assert confirmed.status_code == 200
    assert "is confirmed already" in " ".join(re.sub(r"<[^>]+>", "", text(confirmed)).split())
    await stranger.get("/login")
    done = await stranger.post("/verify/expired-link-0123456789/resend")
    assert done.status_code == 400
    unknown = await stranger.post("/verify/no-such-link-0123456789/resend")
    assert unknown.status_code == 400
    await harness.mail_sent()
    assert len(mailed_links(caplog, "verify")) == 5


async def test_error_pages_show_the_signed_in_header(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """A 404 of an unknown page, a 404 of another workspace and a bad confirmation link
    show the header of the signed-in visitor (before: "Sign in", as if signed out)."""
    b = await make_browser(harness)
    assert (await b.sign_up("ann@example.com")).status_code == 303
    for path, status in (
        ("/no/such/page", 404),
        ("/w/nobody", 404),
        ("/verify/no-such-link-0123456789", 400),
    ):
        r = await b.get(path)
        assert r.status_code == status, path
        assert "ann@example.com" in r.text, path
        assert 'action="/logout"' in r.text, path
        assert 'href="/login">Sign in' not in r.text, path
