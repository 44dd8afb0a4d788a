"""The website's account forms, in-process on every backend: sign-up, email verification,
sign-in and its throttle, sessions, password change and reset, CSRF, headers, cookies."""

from __future__ import annotations

import time
from urllib.parse import unquote

import pytest
from argon2.profiles import RFC_9106_LOW_MEMORY
from conftest import BrowserFactory, Harness, HarnessFactory
from site_client import STRONG, SiteClient, capture_mail, mailed_links, path_of, text

from tally import passwords
from tally.config import parse_networks
from tally.links import secret_hash
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
    """Sign-up makes the account and its workspace, signs in, and logs the confirmation
    link (no SMTP); following it confirms the email."""
    capture_mail(caplog)
    b = await make_browser(harness)
    r = await b.sign_up("Ann.Lee@Example.com")
    assert r.status_code == 303
    assert r.headers["location"] == "/w/ann-lee"
    page = await b.get("/w/ann-lee")
    assert page.status_code == 200
    assert "Confirm your email address" in text(page)
    account = await harness.store.find_account("ann.lee@example.com")
    assert account is not None
    assert not account.verified
    [link] = mailed_links(caplog, "verify")
    done = await b.get(path_of(link))
    assert done.status_code == 303
    account = await harness.store.find_account("ann.lee@example.com")
    assert account is not None
    assert account.verified
    again = await b.get(path_of(link))
    assert again.status_code == 400  # single use


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


async def test_an_email_signs_up_once_in_any_case(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """A second sign-up with the same email in other letters is refused (409)."""
    await (await make_browser(harness)).sign_up("ann@example.com")
    r = await (await make_browser(harness)).sign_up("ANN@example.com")
    assert r.status_code == 409
    assert "An account with this email exists" in text(r)
    assert await harness.store.count_accounts() == 1


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
    harness: Harness, make_browser: BrowserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The reset link is mailed (logged) for a known email only, answers the same either
    way, sets a new password once, and is spent after."""
    capture_mail(caplog)
    await (await make_browser(harness)).sign_up("ann@example.com")
    b = await make_browser(harness)
    unknown = await b.submit("/forgot", {"email": "nobody@example.com"})
    known = await b.submit("/forgot", {"email": "ann@example.com"})
    assert unknown.status_code == known.status_code == 200
    assert "If an account exists" in text(known)
    [link] = mailed_links(caplog, "reset")
    assert (await b.get(path_of(link))).status_code == 200
    weak = await b.post(path_of(link), {"new_password": "123"})
    assert weak.status_code == 400
    done = await b.submit(path_of(link), {"new_password": "brand new secret 9"})
    assert done.status_code == 303
    assert (await b.get(path_of(link))).status_code == 400
    again = await b.submit(path_of(link), {"new_password": "another new one 10"})
    assert again.status_code == 400
    fresh = await make_browser(harness)
    assert (await fresh.log_in("ann@example.com")).status_code == 401
    assert (await fresh.log_in("ann@example.com", "brand new secret 9")).status_code == 303


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


@pytest.mark.parametrize("mode", ["invite", "closed"])
async def test_sign_up_modes(
    make_harness: HarnessFactory, make_browser: BrowserFactory, mode: str
) -> None:
    """TALLY_SIGNUP=invite or closed refuses a plain sign-up (403)."""
    harness = await make_harness(signup=mode)
    r = await (await make_browser(harness)).sign_up("ann@example.com")
    assert r.status_code == 403
    assert await harness.store.count_accounts() == 0


async def test_the_first_account_owns_the_bootstrap_workspace(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """The workspace `default` (made by the first start) belongs to the first account only."""
    default = await harness.workspace("default")
    await (await make_browser(harness)).sign_up("first@example.com")
    await (await make_browser(harness)).sign_up("second@example.com")
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
    harness: Harness, make_browser: BrowserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """At most 5 confirmation or reset emails an hour go to one account, whoever asks."""
    capture_mail(caplog)
    b = await make_browser(harness)
    await b.sign_up("ann@example.com")  # 1
    for _ in range(3):  # 2, 3, 4
        await b.get("/account")
        assert (await b.post("/verify/resend")).status_code == 303
    other = await make_browser(harness)
    for _ in range(4):  # 5, then refused
        assert (await other.submit("/forgot", {"email": "ann@example.com"})).status_code == 200
    assert len(mailed_links(caplog, "verify")) == 4
    assert len(mailed_links(caplog, "reset")) == 1
    await b.get("/account")
    r = await b.post("/verify/resend")
    assert "several links" in unquote(r.headers["set-cookie"])
