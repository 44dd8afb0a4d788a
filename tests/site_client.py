"""A browser-like client for the website's in-process tests: keeps cookies, reads each
form's CSRF token from the page, and submits forms the way a browser would."""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from dataclasses import dataclass, field

import httpx
import pytest

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
LINK_RE = re.compile(r"https?://\S+/(verify|reset|invite)/[A-Za-z0-9_-]+")
STRONG = "a long passphrase 42"
MAIL_WAIT = 10.0  # seconds an email may take to be sent (a loaded machine)


@dataclass
class SiteClient:
    client: httpx.AsyncClient
    csrf: str = ""
    pages: list[str] = field(default_factory=list)

    async def get(self, path: str, **kw: object) -> httpx.Response:
        r = await self.client.get(path, **kw)  # type: ignore[arg-type]
        m = CSRF_RE.search(r.text)
        if m:
            self.csrf = m.group(1)
        return r

    async def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: str | None = None
    ) -> httpx.Response:
        """POST a form; the CSRF token from the last page unless `csrf` says otherwise
        ("" sends none)."""
        if not self.csrf and csrf is None:
            await self.get("/login")
        form = dict(data or {})
        token = self.csrf if csrf is None else csrf
        if token:
            form["csrf_token"] = token
        r = await self.client.post(path, data=form)
        if any(c.startswith("tally_session=") for c in r.headers.get_list("set-cookie")):
            # signed in or out: the forms' tokens are the session's (tally.site.security),
            # so the next form is the next page's, as a browser loads it
            self.csrf = ""
        return r

    async def follow(self, r: httpx.Response) -> httpx.Response:
        """The page a 303 (Post/Redirect/Get) leads to, as a browser opens it; any other
        answer as it is."""
        if r.status_code != 303:
            return r
        return await self.get(r.headers["location"])

    async def submit(
        self, page: str, data: dict[str, str], action: str | None = None
    ) -> httpx.Response:
        """GET `page` (for its CSRF token), then POST `data` to `action` (default: the page)."""
        await self.get(page)
        return await self.post(action or page, data)

    async def sign_up(self, email: str, password: str = STRONG) -> httpx.Response:
        """Sign up, then sign in (sign-up itself signs nobody in: its page must read the
        same whether the address was free or taken); the sign-in's answer, or the
        sign-up's if it was refused."""
        posted = await self.submit("/signup", {"email": email, "password": password})
        if any(c.startswith("tally_session=") for c in posted.headers.get_list("set-cookie")):
            return posted  # the instance's first account, which owns `default`: signed in
        r = await self.follow(posted)
        if r.status_code != 200 or 'id="signup-sent"' not in r.text:
            return r
        return await self.log_in(email, password)

    async def log_in(self, email: str, password: str = STRONG) -> httpx.Response:
        return await self.submit("/login", {"email": email, "password": password})


def mailed_links(caplog: pytest.LogCaptureFixture, kind: str) -> list[str]:
    """The links of `kind` (verify, reset, invite) in emails written to the log."""
    return [
        m.group(0)
        for record in caplog.records
        if record.name == "tally.mail"
        for m in LINK_RE.finditer(record.getMessage())
        if m.group(1) == kind
    ]


async def mailed_links_soon(
    caplog: pytest.LogCaptureFixture, kind: str, count: int = 1
) -> list[str]:
    """The links of `kind` once at least `count` were written (mail is sent off the
    request, a moment after its answer); AssertionError after MAIL_WAIT seconds."""
    deadline = time.monotonic() + MAIL_WAIT
    while True:
        links = mailed_links(caplog, kind)
        if len(links) >= count:
            return links
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(links)} {kind} links mailed, not {count}")
        await asyncio.sleep(0.02)


def path_of(link: str) -> str:
    return "/" + link.split("/", 3)[3]


def text(r: httpx.Response) -> str:
    """The page's text with entities decoded, for assertions on messages."""
    return html.unescape(r.text)


def capture_mail(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tally.mail")
