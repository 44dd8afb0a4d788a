"""A real SMTP server (aiosmtpd) on loopback for the website's tests: it keeps what it
receives, and finds the links in it."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

MAIL_WAIT = 10.0  # seconds an email may take to arrive (a loaded machine)
LINK_RE = re.compile(r"http://tally\.test/(?:verify|reset|invite)/[A-Za-z0-9_-]+")


class Inbox:
    """aiosmtpd handler: keeps every message it is given."""

    def __init__(self, delay: float = 0.0) -> None:
        self.messages: list[Message] = []
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
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
        """The one link of `kind` in the last email to `to` that has one, as a path (the
        emails of one account may arrive in any order: they are sent off the request)."""
        for message in reversed(self.messages):
            if message["To"] == to:
                body = message.get_payload(decode=True)
                assert isinstance(body, bytes)
                links: list[str] = [m for m in LINK_RE.findall(body.decode()) if f"/{kind}/" in m]
                assert len(links) <= 1, body
                if links:
                    return links[0].removeprefix("http://tally.test")
        raise AssertionError(f"no email to {to} with a {kind} link")


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"tally", b"s3cret")
    return AuthResult(success=ok)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def smtp_server(delay: float = 0.0) -> Iterator[tuple[Inbox, int]]:
    """An SMTP server on 127.0.0.1 that wants the login tally / s3cret (and takes `delay`
    seconds over each message, as a slow mail server does)."""
    inbox = Inbox(delay)
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_require_tls=False,
        ready_timeout=10,
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def smtp_settings(port: int) -> dict[str, Any]:
    """make_harness's overrides for the server of `smtp_server` on `port`."""
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "none",
        "smtp_user": "tally",
        "smtp_password": "s3cret",
        "mail_from": "Tally <tally@tally.test>",
        "public_url": "http://tally.test",
    }
