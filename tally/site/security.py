"""The website's HTTP security: response headers, CSRF tokens, cookies, https detection.

CSRF: every visitor gets a random `tally_csrf` cookie (HttpOnly, SameSite=Lax); each
form carries HMAC-SHA256(secret key, that cookie and the session cookie) in a hidden
`csrf_token` field, and a POST is refused unless it is the one of the cookies the POST
comes with. A forged form on another site can neither read the cookies nor compute the
HMAC. Once signed in, the token is bound to the session too: a token minted before
(or in another session) does not pass, so a `tally_csrf` cookie planted by a sibling
domain, together with a token the attacker got for it while signed out, is useless
against a signed-in visitor; signing in or out changes the session cookie, and with it
every token of the page.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets

from starlette.requests import Request
from starlette.responses import Response

from tally.config import Network
from tally.numbers import whole_number
from tally.web.http import ASGIApp, Message, Receive, Scope, Send, header, response_start

CSRF_COOKIE = "tally_csrf"
CSRF_FIELD = "csrf_token"
SESSION_COOKIE = "tally_session"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware: the security headers on every response of the website, `no-store`
    on every page but the static files, and what every Tally answer has (X-Request-Id,
    the status for the metrics: `tally.web.http.response_start`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *HEADERS]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = response_start(message["status"], headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


# The largest request body the website reads (its forms are a few hundred bytes; the
# longest field, a counter's description, is 500 characters). docs/security.md.
MAX_FORM_BODY = 64 * 1024
_TOO_LARGE = b"Request body too large: the website accepts at most 64 KB.\n"


FORMS_AT_ONCE = 4  # the website's POSTs handled at once per node
FORMS_WAITING = 10_000  # and waiting for their turn; past that, 503 at once


class FormGate:
    """ASGI middleware: at most `at_once` of the website's POSTs are handled at a time; the
    others wait their turn, asleep (a flood of sign-ins or sign-ups then takes turns with
    the API's requests on the event loop instead of filling it: each waiting form costs
    the loop nothing until its turn). Past `waiting` waiting, 503 at once."""

    def __init__(
        self, app: ASGIApp, at_once: int = FORMS_AT_ONCE, waiting: int = FORMS_WAITING
    ) -> None:
        self.app = app
        self.waiting = waiting
        self._turns = asyncio.Semaphore(at_once)
        self._queued = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        if self._queued >= self.waiting:
            await _plain(send, 503, b"The server is busy. Try again in a moment.\n")
            return
        self._queued += 1
        try:
            await self._turns.acquire()
        finally:
            self._queued -= 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._turns.release()


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is a 413 before the website's
    forms see any of it (Starlette would read an urlencoded form whole, however big). The
    body is read here, at most `limit` bytes of it, and handed on in one piece."""

    def __init__(self, app: ASGIApp, limit: int = MAX_FORM_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and whole_number(declared, 0, self.limit) is None:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _too_large(send: Send) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        await send(response_start(413, headers))
        await send({"type": "http.response.body", "body": _TOO_LARGE})


async def _plain(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"retry-after", b"1")]
    await send(response_start(status, headers))
    await send({"type": "http.response.body", "body": body})


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def is_https(request: Request, trusted: tuple[Network, ...]) -> bool:
    """The browser speaks https: directly, or to a trusted proxy that says so in
    X-Forwarded-Proto."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else ""
    if trusted and _trusted(peer, trusted):
        proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return proto == "https"
    return False


def csrf_token(key: bytes, cookie: str, session: str = "") -> str:
    """The form token of a browser's CSRF cookie and session cookie ("" signed out)."""
    raw = cookie.encode()
    message = b"csrf:%d:%b:%b" % (len(raw), raw, session.encode())
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def session_cookie(request: Request) -> str:
    """The session cookie the request comes with ("" if none): the same value the
    session is looked up by, so a token is bound to the session the request acts as."""
    return request.cookies.get(SESSION_COOKIE, "")


def csrf_cookie(request: Request) -> tuple[str, bool]:
    """The visitor's CSRF cookie value, and whether it is new (to be set)."""
    value = request.cookies.get(CSRF_COOKIE, "")
    if len(value) >= 32:
        return value, False
    return secrets.token_urlsafe(32), True


def csrf_valid(key: bytes, request: Request, submitted: str) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if len(cookie) < 32 or not submitted:
        return False
    # bytes: compare_digest raises on a str with non-ASCII characters (a 500, not a 403)
    expected = csrf_token(key, cookie, session_cookie(request)).encode()
    return hmac.compare_digest(expected, submitted.encode(errors="replace"))


def set_cookie(response: Response, name: str, value: str, *, secure: bool, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="lax"
    )
