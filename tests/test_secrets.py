"""Secrets of the website: passwords rehashed when the argon2 parameters change, and each
kind of link or session id good for its own purpose only (docs/security.md)."""

from __future__ import annotations

import time

from argon2 import PasswordHasher, Type
from conftest import BrowserFactory, Harness, HarnessFactory
from site_client import STRONG
from smtp_inbox import Inbox, smtp_settings

from tally.links import secret_hash
from tally.passwords import needs_rehash


async def test_a_password_is_rehashed_on_login_when_the_parameters_change(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """An argon2id hash made with weaker parameters than today's (or argon2i) is replaced
    at the next successful login, with the same password still working and the other
    sessions kept; a failed login changes nothing."""
    b = await make_browser(harness)
    await b.sign_up("ann@example.com")
    account = await harness.store.find_account("ann@example.com")
    assert account is not None
    assert not needs_rehash(account.password_hash)
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(STRONG)
    assert needs_rehash(weak)
    await harness.store.set_password(account.id, weak, time.time(), rehash=True)
    other = await make_browser(harness)
    assert (await other.log_in("ann@example.com", "wrong password 12")).status_code == 401
    after_failure = await harness.store.find_account("ann@example.com")
    assert after_failure is not None
    assert after_failure.password_hash == weak
    assert (await other.log_in("ann@example.com")).status_code == 303
    rehashed = await harness.store.find_account("ann@example.com")
    assert rehashed is not None
    assert rehashed.password_hash != weak
    assert rehashed.password_hash.startswith("$argon2id$")
    assert not needs_rehash(rehashed.password_hash)
    assert (await b.get("/account")).status_code == 200  # the first session lives on
    third = await make_browser(harness)
    assert (await third.log_in("ann@example.com")).status_code == 303
    same = await harness.store.find_account("ann@example.com")
    assert same is not None
    assert same.password_hash == rehashed.password_hash  # no rehash when up to date


def test_a_hash_tally_cannot_read_needs_rehash() -> None:
    """A hash that is no argon2 hash at all is replaced too (after a verified login)."""
    assert needs_rehash("not a hash")
    assert needs_rehash(PasswordHasher(type=Type.I).hash("x"))


async def test_links_and_sessions_are_single_purpose(
    make_harness: HarnessFactory, make_browser: BrowserFactory, smtp: tuple[Inbox, int]
) -> None:
    """A confirmation link is no reset link, a reset link no confirmation link, and a
    session id neither; nor is a link a session. Each is refused where it does not
    belong, and still works where it does (once)."""
    inbox, port = smtp
    harness = await make_harness(**smtp_settings(port))
    b = await make_browser(harness)
    await b.sign_up("ann@example.com")
    session = b.client.cookies["tally_session"]
    await harness.mail_sent()
    verify = inbox.link("ann@example.com", "verify")
    await b.submit("/forgot", {"email": "ann@example.com"})
    await harness.mail_sent()
    reset = inbox.link("ann@example.com", "reset")
    verify_secret, reset_secret = verify.rsplit("/", 1)[1], reset.rsplit("/", 1)[1]
    stranger = await make_browser(harness)
    for wrong in (verify_secret, session):
        assert (await stranger.get(f"/reset/{wrong}")).status_code == 400
        r = await stranger.post(f"/reset/{wrong}", {"new_password": "brand new secret 9"})
        assert r.status_code == 400
    for wrong in (reset_secret, session):
        await stranger.get(f"/verify/{wrong}")
        account = await harness.store.find_account("ann@example.com")
        assert account is not None
        assert not account.verified
    for wrong in (verify_secret, reset_secret):
        intruder = await make_browser(harness)
        intruder.client.cookies.set("tally_session", wrong)
        assert (await intruder.get("/account")).status_code == 303
    assert await harness.store.find_session(secret_hash(verify_secret), 0.0) is None
    # and each still works for its own purpose
    await b.get(verify)
    account = await harness.store.find_account("ann@example.com")
    assert account is not None
    assert account.verified
    done = await stranger.submit(reset, {"new_password": "brand new secret 9"})
    assert done.status_code == 303
