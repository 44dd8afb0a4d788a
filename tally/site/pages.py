"""What every page handler shares: the site's services, the visitor's session, CSRF-checked
forms, rendering with the layout's context, and redirects with a one-time notice.

A handler reads top to bottom: who is asking (`signed_in`), what they ask for (loaded
with its workspace, `tally.workspaces.membership`), may they (`require_role`), do it
(the domain modules), then redirect or render the form with its error.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import jinja2
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from tally.accounts import SESSION_TTL, Accounts
from tally.config import Settings
from tally.counters import Counters
from tally.errors import Forbidden, NotFound, StorageError, TallyError
from tally.mail import Mailer
from tally.models import Session
from tally.numbers import row_id
from tally.site import security
from tally.storage.base import Store
from tally.web import http
from tally.web.stream import Streams

FLASH_COOKIE = "tally_notice"
REVEAL_COOKIE = "tally_reveal"
REVEAL_SECONDS = 60


@dataclass(frozen=True, slots=True)
class FormError:
    """A form that was refused, to show where the person looks: the message at the form
    (its section's id is `form`; the form posts to a URL ending in `#form`, so the
    browser comes back there), the refused `fields` marked and the first one focused,
    and a summary at the top of the page. Nothing of the form was saved."""

    form: str
    message: str
    fields: tuple[str, ...] = ()


@dataclass
class Site:
    settings: Settings
    store: Store
    counters: Counters
    accounts: Accounts
    mailer: Mailer
    token_key: bytes  # the API tokens' HMAC key
    csrf_key: bytes
    streams: Streams  # the API's live streams, which the counter page's stream joins
    poke_alerts: Callable[[], None] = lambda: None  # the alert deliverer: look now (a resend)


class LoginRequired(Exception):
    """The page needs a signed-in visitor: redirect to the sign-in page."""


class CsrfFailed(Forbidden):
    default_message = (
        "This form expired or came from another site. Go back, reload the page and try again."
    )


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(ts: float | None) -> str:
    if ts is None:
        return "never"
    seconds = max(0, int(time.time() - ts))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.PackageLoader("tally.site", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)
# `shell` quotes a word for a POSIX shell (the curl snippets); JavaScript strings take
# Jinja's own `tojson` (JSON is a JavaScript literal; it escapes < > & ' for HTML too)
templates.env.filters.update(when=_when, ago=_ago, iso=_iso, shell=shlex.quote)


def site(request: Request) -> Site:
    s: Site = request.app.state.site
    return s


def client_key(request: Request) -> str:
    """Who per-client limits count the request against, as the API's rate limit does:
    the client IP, an IPv6 client's network (tally.web.http.client_key)."""
    settings = site(request).settings
    return http.client_key(request.scope, settings.trusted_proxies, settings.ipv6_prefix)


def secure(request: Request) -> bool:
    return security.is_https(request, site(request).settings.trusted_proxies)


def base_url(request: Request) -> str:
    """Where links point: TALLY_PUBLIC_URL, else this request's origin. Settings refuse
    SMTP without TALLY_PUBLIC_URL, so a mailed link never follows a request's Host header
    (this origin only reaches the server's log and the inviter's own page)."""
    configured = site(request).settings.public_url
    if configured:
        return configured
    scheme = "https" if secure(request) else "http"
    return f"{scheme}://{request.url.netloc}"


async def visitor(request: Request) -> Session | None:
    """The signed-in visitor's session, if any (looked up once per request)."""
    if not hasattr(request.state, "session"):
        secret = request.cookies.get(security.SESSION_COOKIE)
        request.state.session = await site(request).accounts.session(secret)
    session: Session | None = request.state.session
    return session


async def signed_in(request: Request) -> Session:
    session = await visitor(request)
    if session is None:
        raise LoginRequired()
    return session


async def form(request: Request) -> FormData:
    """The POSTed form, once its CSRF token checked out (else CsrfFailed, 403)."""
    data = await request.form()
    submitted = data.get(security.CSRF_FIELD)
    if not isinstance(submitted, str) or not security.csrf_valid(
        site(request).csrf_key, request, submitted
    ):
        raise CsrfFailed()
    return data


def path_id(request: Request, name: str, what: str) -> int:
    """The id `name` of the path (tally.numbers: digits, 1 to 2^63 - 1), else NotFound
    ("No such {what}."): an id no row can have names nothing."""
    value = row_id(str(request.path_params[name]))
    if value is None:
        raise NotFound(f"No such {what}.")
    return value


def field(data: FormData, name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """The template in the layout, with the CSRF token, the visitor and any notice."""
    cookie, new = security.csrf_cookie(request)
    notice = unquote(request.cookies.get(FLASH_COOKIE, ""))
    context.setdefault("error", None)
    context.setdefault("form_error", None)
    context.setdefault("workspace", None)
    context.setdefault("role", None)
    context.setdefault("section", "")
    context.setdefault("live_base", "")  # a shared counter's path (tally/site/shares.py)
    context.update(
        csrf_token=security.csrf_token(
            site(request).csrf_key, cookie, security.session_cookie(request)
        ),
        session=getattr(request.state, "session", None),
        notice=notice,
        signup_mode=site(request).settings.signup,
    )
    context.setdefault("mails", site(request).mailer.configured)
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    if new:
        security.set_cookie(
            response, security.CSRF_COOKIE, cookie, secure=secure(request), max_age=SESSION_TTL_S
        )
    if notice:
        response.delete_cookie(FLASH_COOKIE, path="/")
    if REVEAL_COOKIE in request.cookies:  # shown (or refused) once: gone from now on
        response.delete_cookie(
            REVEAL_COOKIE,
            path=request.url.path,
            secure=secure(request),
            httponly=True,
            samesite="strict",
        )
    return response


async def render_error(request: Request, exc: TallyError) -> Response:
    """The error page, with the header of the visitor as they are signed in (a 404 of an
    unknown path is answered before any handler looked the session up)."""
    with contextlib.suppress(StorageError):  # the store is away: the page says so
        await visitor(request)
    response = render(request, "error.html", exc.status, message=exc.message, status=exc.status)
    for name, value in exc.headers:  # a 429's Retry-After
        response.headers[name.decode()] = value.decode()
    return response


SESSION_TTL_S = int(SESSION_TTL)


def redirect(request: Request, url: str, notice: str = "") -> Response:
    """303 to `url` (Post/Redirect/Get), with a notice shown once on the next page."""
    response = RedirectResponse(url, status_code=303)
    if notice:
        security.set_cookie(
            response, FLASH_COOKIE, quote(notice), secure=secure(request), max_age=60
        )
    return response


def redirect_revealing(request: Request, url: str, value: str, notice: str = "") -> Response:
    """303 to `url`, whose page shows `value` once: Post/Redirect/Get for what a POST made
    and the person must see once (the token just created, an invitation link, where a
    link was sent). The value rides in a cookie for that path alone (HttpOnly,
    SameSite=Strict, a minute long) that the page clears as it renders, so a reload or
    Back shows it no more and makes nothing again. Never in a URL (nor so in a log), and
    in no node's memory: any node of a cluster answers the GET. The page checks the
    value against the store before it shows it (`revealed`)."""
    response = redirect(request, url, notice)
    response.set_cookie(
        REVEAL_COOKIE,
        quote(value, safe=""),
        max_age=REVEAL_SECONDS,
        path=urlsplit(url).path,
        secure=secure(request),
        httponly=True,
        samesite="strict",
    )
    return response


def revealed(request: Request) -> str:
    """The value `redirect_revealing` left for this page ("" if none); `render` clears it."""
    if request.method != "GET":
        return ""
    return unquote(request.cookies.get(REVEAL_COOKIE, ""))[:1000]


def start_session(request: Request, response: Response, secret: str) -> Response:
    security.set_cookie(
        response, security.SESSION_COOKIE, secret, secure=secure(request), max_age=SESSION_TTL_S
    )
    return response


def derive_key(key: bytes, purpose: bytes) -> bytes:
    return hmac.new(key, b"tally-site:" + purpose, hashlib.sha256).digest()
