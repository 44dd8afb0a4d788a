"""Email end to end: a real SMTP server (aiosmtpd) on loopback receives the verification,
reset and invitation emails, and the links read from them are followed."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import BrowserFactory, HarnessFactory
from services import unavailable
from site_client import text
from smtp_inbox import Inbox, authenticate, free_port, smtp_server, smtp_settings

from tally.config import SettingsError

SLOW_SMTP = 2.0  # seconds the slow mail server takes over each message


async def test_verification_reset_and_invitation_by_email(
    make_harness: HarnessFactory, make_browser: BrowserFactory, smtp: tuple[Inbox, int]
) -> None:
    """Sign-up mails the confirmation link, "forgot password" the reset link, an invite
    the invitation link; each, read from the received email and followed, works. The
    invitation does not confirm the invitee's address: their own link does."""
    inbox, port = smtp
    harness = await make_harness(**smtp_settings(port))
    b = await make_browser(harness)
    assert (await b.sign_up("ann@example.com")).status_code == 303
    await harness.mail_sent()
    [mail] = inbox.messages
    assert mail["From"] == "Tally <tally@tally.test>"
    assert mail["Subject"] == "Confirm your email for Tally"
    assert (await b.get(inbox.link("ann@example.com", "verify"))).status_code == 303
    account = await harness.store.find_account("ann@example.com")
    assert account is not None
    assert account.verified

    other = await make_browser(harness)
    assert (await other.submit("/forgot", {"email": "ann@example.com"})).status_code == 303
    await harness.mail_sent()
    reset = inbox.link("ann@example.com", "reset")
    done = await other.submit(reset, {"new_password": "a fresh password 3"})
    assert done.status_code == 303
    assert (
        await (await make_browser(harness)).log_in("ann@example.com", "a fresh password 3")
    ).status_code == 303

    assert (await b.log_in("ann@example.com", "a fresh password 3")).status_code == 303
    r = await b.submit("/w/ann/members", {"email": "bob@example.com", "role": "viewer"})
    assert r.status_code == 303
    r = await b.follow(r)
    await harness.mail_sent()
    invite = inbox.link("bob@example.com", "invite")
    assert invite in text(r)
    bob = await make_browser(harness)
    await bob.get(invite)
    secret = invite.rsplit("/", 1)[1]
    await bob.get(f"/signup?invite={secret}")
    joined = await bob.post(
        "/signup", {"email": "bob@example.com", "password": "bob's password 5", "invite": secret}
    )
    assert joined.status_code == 303
    assert "Check your email" in text(await bob.follow(joined))
    assert (await bob.log_in("bob@example.com", "bob's password 5")).status_code == 303
    assert (await bob.get("/")).headers["location"] == "/w/ann"
    bob_account = await harness.store.find_account("bob@example.com")
    assert bob_account is not None
    assert not bob_account.verified
    await harness.mail_sent()
    assert (await bob.get(inbox.link("bob@example.com", "verify"))).status_code == 303
    bob_account = await harness.store.find_account("bob@example.com")
    assert bob_account is not None
    assert bob_account.verified


async def test_a_mailed_link_ignores_the_host_header(
    make_harness: HarnessFactory, make_browser: BrowserFactory, smtp: tuple[Inbox, int]
) -> None:
    """A reset asked for with a forged Host header mails a link to TALLY_PUBLIC_URL, not
    to the forged host (and SMTP without TALLY_PUBLIC_URL does not start at all)."""
    inbox, port = smtp
    with pytest.raises(SettingsError, match="TALLY_PUBLIC_URL"):
        await make_harness(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")
    harness = await make_harness(**smtp_settings(port))
    await (await make_browser(harness)).sign_up("ann@example.com")
    attacker = await make_browser(harness)
    attacker.client.headers["host"] = "attacker.example"
    r = await attacker.submit("/forgot", {"email": "ann@example.com"})
    assert r.status_code == 303
    await harness.mail_sent()
    body = (await inbox.wait_for("ann@example.com", "Reset your Tally password")).get_payload(
        decode=True
    )
    assert isinstance(body, bytes)
    assert b"attacker.example" not in body
    assert inbox.link("ann@example.com", "reset").startswith("/reset/")


async def test_the_owner_of_a_squatted_address_takes_it_back(
    make_harness: HarnessFactory, make_browser: BrowserFactory, smtp: tuple[Inbox, int]
) -> None:
    """An owner who signs up a stranger's address through their own invitation gets an
    unconfirmed account; the address's real owner, signing up, is told by email that it
    has an account (not by the page), resets its password through the link only they
    receive, and so confirms it and ends the squatter's sessions."""
    inbox, port = smtp
    harness = await make_harness(**smtp_settings(port))
    mallory = await make_browser(harness)
    await mallory.sign_up("mallory@example.com")
    await harness.mail_sent()
    await mallory.get(inbox.link("mallory@example.com", "verify"))
    r = await mallory.follow(
        await mallory.submit("/w/mallory/members", {"email": "vic@example.com", "role": "owner"})
    )
    secret = r.text.split('<code id="invite-link">', 1)[1].split("<", 1)[0].rsplit("/", 1)[1]
    squat = await make_browser(harness)
    await squat.get(f"/signup?invite={secret}")
    await squat.post(
        "/signup", {"email": "vic@example.com", "password": "mallory's own 1", "invite": secret}
    )
    assert (await squat.log_in("vic@example.com", "mallory's own 1")).status_code == 303
    vic = await make_browser(harness)
    r = await vic.submit("/signup", {"email": "vic@example.com", "password": "vic's password 2"})
    assert r.status_code == 303
    r = await vic.follow(r)
    assert 'id="signup-sent"' in r.text
    assert "exists" not in text(r)
    await harness.mail_sent()
    assert "Your Tally account" in [
        m["Subject"] for m in inbox.messages if m["To"] == "vic@example.com"
    ]
    await vic.submit("/forgot", {"email": "vic@example.com"})
    await harness.mail_sent()
    done = await vic.submit(
        inbox.link("vic@example.com", "reset"), {"new_password": "vic's password 2"}
    )
    assert done.status_code == 303
    account = await harness.store.find_account("vic@example.com")
    assert account is not None
    assert account.verified
    assert (await squat.get("/account")).status_code == 303  # signed out


async def test_an_unreachable_smtp_server_does_not_fail_the_form(
    make_harness: HarnessFactory, make_browser: BrowserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """With no SMTP server listening the sign-up still succeeds, the email that could not
    be sent is logged (ERROR: never lost silently), the account page can send it again,
    and nothing crashes."""
    harness = await make_harness(
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        smtp_security="none",
        public_url="http://tally.test",
    )
    b = await make_browser(harness)
    r = await b.sign_up("ann@example.com")
    assert r.status_code == 303
    assert await harness.store.find_account("ann@example.com") is not None
    await harness.mail_sent()
    assert any(
        rec.levelname == "ERROR" and "could not send the email" in rec.getMessage()
        for rec in caplog.records
    )
    assert (await b.get("/account")).status_code == 200
    await b.get("/account")
    assert (await b.post("/verify/resend")).status_code == 303


async def test_a_slow_mail_server_never_slows_a_page(
    make_harness: HarnessFactory, make_browser: BrowserFactory
) -> None:
    """Mail goes off the request: with an SMTP server that takes 2 s a message, "forgot
    password" and sign-up answer at once (before: 2 s, and ~2 ms for an unknown address,
    which told whether an account exists); the emails arrive after."""
    with smtp_server(delay=SLOW_SMTP) as (inbox, port):
        harness = await make_harness(**smtp_settings(port))
        await harness.store.create_account("ann@example.com", "x", 0.0)
        b = await make_browser(harness)
        timings = {}
        for email in ("ann@example.com", "nobody@example.com"):
            await b.get("/forgot")
            started = time.monotonic()
            r = await b.post("/forgot", {"email": email})
            timings[email] = time.monotonic() - started
            assert r.status_code == 303
        await b.get("/signup")
        started = time.monotonic()
        r = await b.post("/signup", {"email": "ann@example.com", "password": "a long one 42"})
        timings["signup"] = time.monotonic() - started
        assert r.status_code == 303
        assert max(timings.values()) < SLOW_SMTP / 2, timings
        await inbox.wait_for("ann@example.com", "Reset your Tally password")
        await inbox.wait_for("ann@example.com", "Your Tally account")
        assert {m["To"] for m in inbox.messages} == {"ann@example.com"}


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    if shutil.which("openssl") is None:
        unavailable("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_mail_over_starttls_and_tls(
    make_harness: HarnessFactory,
    make_browser: BrowserFactory,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    security: str,
) -> None:
    """TALLY_SMTP_SECURITY=starttls upgrades the connection, tls speaks TLS from the start;
    the server's certificate is verified (here against the test's own CA file)."""
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts this certificate
    inbox = Inbox()
    port = free_port()
    options: dict[str, Any] = (
        {"tls_context": context, "require_starttls": True}
        if security == "starttls"
        # (aiosmtpd does not count implicit TLS as TLS for AUTH)
        else {"ssl_context": context, "auth_require_tls": False}
    )
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        ready_timeout=10,
        **options,
    )
    controller.start()
    try:
        harness = await make_harness(
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security=security,
            smtp_user="tally",
            smtp_password="s3cret",
            public_url="http://tally.test",
        )
        b = await make_browser(harness)
        assert (await b.sign_up("ann@example.com")).status_code == 303
        await harness.mail_sent()
        assert (await b.get(inbox.link("ann@example.com", "verify"))).status_code == 303
    finally:
        controller.stop()
