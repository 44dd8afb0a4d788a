"""Email end to end: a real SMTP server (aiosmtpd) on loopback receives the verification,
reset and invitation emails, and the links read from them are followed."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import BrowserFactory, HarnessFactory
from services import unavailable
from site_client import text

from tally.config import SettingsError

MAIL_WAIT = 10.0  # seconds an email may take to arrive (a loaded machine)
LINK_RE = re.compile(r"http://tally\.test/(?:verify|reset|invite)/[A-Za-z0-9_-]+")


class Inbox:
    """aiosmtpd handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    async def wait_for(self, to: str, subject: str) -> Message:
        """The first email to `to` with `subject`, once it arrived (mail is sent off the
        request, so it may come a moment after the answer)."""
        deadline = time.monotonic() + MAIL_WAIT
        while time.monotonic() < deadline:
            for message in self.messages:
                if message["To"] == to and message["Subject"] == subject:
                    return message
            await asyncio.sleep(0.02)
        raise AssertionError(f"no email {subject!r} to {to} within {MAIL_WAIT} s")

    def link(self, to: str, kind: str) -> str:
        """The one link of `kind` in the last email to `to`, as a path."""
        for message in reversed(self.messages):
            if message["To"] == to:
                body = message.get_payload(decode=True)
                assert isinstance(body, bytes)
                links: list[str] = [m for m in LINK_RE.findall(body.decode()) if f"/{kind}/" in m]
                assert len(links) == 1, body
                return links[0].removeprefix("http://tally.test")
        raise AssertionError(f"no email to {to}")


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"tally", b"s3cret")
    return AuthResult(success=ok)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """An SMTP server on 127.0.0.1 that wants the login tally / s3cret."""
    inbox = Inbox()
    port = _free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_require_tls=False,
        ready_timeout=10,
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_verification_reset_and_invitation_by_email(
    make_harness: HarnessFactory, make_browser: BrowserFactory, smtp: tuple[Inbox, int]
) -> None:
    """Sign-up mails the confirmation link, "forgot password" the reset link, an invite
    the invitation link; each, read from the received email and followed, works."""
    inbox, port = smtp
    harness = await make_harness(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_user="tally",
        smtp_password="s3cret",
        mail_from="Tally <tally@tally.test>",
        public_url="http://tally.test",
    )
    b = await make_browser(harness)
    assert (await b.sign_up("ann@example.com")).status_code == 303
    [mail] = inbox.messages
    assert mail["From"] == "Tally <tally@tally.test>"
    assert mail["Subject"] == "Confirm your email for Tally"
    assert (await b.get(inbox.link("ann@example.com", "verify"))).status_code == 303
    account = await harness.store.find_account("ann@example.com")
    assert account is not None
    assert account.verified

    other = await make_browser(harness)
    assert (await other.submit("/forgot", {"email": "ann@example.com"})).status_code == 200
    reset = inbox.link("ann@example.com", "reset")
    done = await other.submit(reset, {"new_password": "a fresh password 3"})
    assert done.status_code == 303
    assert (
        await (await make_browser(harness)).log_in("ann@example.com", "a fresh password 3")
    ).status_code == 303

    assert (await b.log_in("ann@example.com", "a fresh password 3")).status_code == 303
    r = await b.submit("/w/ann/members", {"email": "bob@example.com", "role": "viewer"})
    assert r.status_code == 200
    invite = inbox.link("bob@example.com", "invite")
    assert invite in text(r)
    bob = await make_browser(harness)
    await bob.get(invite)
    secret = invite.rsplit("/", 1)[1]
    await bob.get(f"/signup?invite={secret}")
    joined = await bob.post(
        "/signup", {"email": "bob@example.com", "password": "bob's password 5", "invite": secret}
    )
    assert joined.headers["location"] == "/w/ann"


async def test_a_mailed_link_ignores_the_host_header(
    make_harness: HarnessFactory, make_browser: BrowserFactory, smtp: tuple[Inbox, int]
) -> None:
    """A reset asked for with a forged Host header mails a link to TALLY_PUBLIC_URL, not
    to the forged host (and SMTP without TALLY_PUBLIC_URL does not start at all)."""
    inbox, port = smtp
    with pytest.raises(SettingsError, match="TALLY_PUBLIC_URL"):
        await make_harness(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")
    harness = await make_harness(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_user="tally",
        smtp_password="s3cret",
        public_url="http://tally.test",
    )
    await (await make_browser(harness)).sign_up("ann@example.com")
    attacker = await make_browser(harness)
    attacker.client.headers["host"] = "attacker.example"
    r = await attacker.submit("/forgot", {"email": "ann@example.com"})
    assert r.status_code == 200
    await inbox.wait_for("ann@example.com", "Reset your Tally password")
    body = inbox.messages[-1].get_payload(decode=True)
    assert isinstance(body, bytes)
    assert b"attacker.example" not in body
    assert inbox.link("ann@example.com", "reset").startswith("/reset/")


async def test_an_unreachable_smtp_server_does_not_fail_the_form(
    make_harness: HarnessFactory, make_browser: BrowserFactory
) -> None:
    """With no SMTP server listening the sign-up still succeeds (the email is logged as
    not sent; the account page can send it again) and nothing crashes."""
    harness = await make_harness(
        smtp_host="127.0.0.1",
        smtp_port=_free_port(),
        smtp_security="none",
        public_url="http://tally.test",
    )
    b = await make_browser(harness)
    r = await b.sign_up("ann@example.com")
    assert r.status_code == 303
    assert await harness.store.find_account("ann@example.com") is not None
    assert (await b.get("/account")).status_code == 200
    await b.get("/account")
    assert (await b.post("/verify/resend")).status_code == 303


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
    port = _free_port()
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
        authenticator=_authenticate,
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
        assert (await b.get(inbox.link("ann@example.com", "verify"))).status_code == 303
    finally:
        controller.stop()
