"""`create_site(...)`: the website, a Starlette app that `tally.web.app.App` serves beside
the API for every path that is not `/v2/`, `/healthz` or `/metrics`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tally.accounts import Accounts
from tally.config import Settings
from tally.counters import Counters
from tally.errors import NotFound, StorageError, TallyError, Unavailable
from tally.mail import Outbox
from tally.nodes import LiveNodes
from tally.site import accounts, alerts, counters, overview, shares, tokens, workspaces
from tally.site.live import CounterStream
from tally.site.pages import LoginRequired, Site, derive_key, redirect, render_error
from tally.site.security import BodyLimit, FormGate, SecurityHeaders
from tally.storage.base import Store
from tally.throttle import LocalWindows
from tally.web.stream import Streams

if TYPE_CHECKING:
    from tally.storage.redis_windows import SharedWindows

log = logging.getLogger("tally.site")
GET, POST, BOTH = ["GET"], ["POST"], ["GET", "POST"]
W = "/w/{slug}"

ROUTES = [
    Route("/", accounts.home, methods=GET),
    Route("/signup", accounts.signup, methods=BOTH),
    Route("/login", accounts.login, methods=BOTH),
    Route("/logout", accounts.logout, methods=POST),
    Route("/logout-everywhere", accounts.logout_everywhere, methods=POST),
    Route("/verify/resend", accounts.resend_verification, methods=POST),
    Route("/verify/{secret}", accounts.verify, methods=GET),
    Route("/verify/{secret}/resend", accounts.resend_from_link, methods=POST),
    Route("/forgot", accounts.forgot, methods=BOTH),
    Route("/reset/{secret}", accounts.reset, methods=BOTH),
    Route("/account", accounts.account, methods=BOTH),
    Route("/invite/{secret}", accounts.invitation, methods=BOTH),
    Route("/workspaces/new", workspaces.create, methods=BOTH),
    Route(W, overview.overview, methods=GET),
    Route(W + "/period", overview.period_fragment, methods=GET),
    Route(W + "/settings", workspaces.settings, methods=BOTH),
    Route(W + "/settings/rules", workspaces.set_rules, methods=POST),
    Route(W + "/settings/quota", workspaces.set_quota, methods=POST),
    Route(W + "/settings/pages", workspaces.set_pages, methods=POST),
    Route(W + "/settings/timezone", workspaces.set_timezone, methods=POST),
    Route(W + "/delete", workspaces.delete, methods=POST),
    Route(W + "/export", workspaces.export, methods=GET),
    Route(W + "/members", workspaces.members, methods=BOTH),
    Route(W + "/members/{account_id}", workspaces.member_change, methods=POST),
    Route(W + "/invites/{invite_id}/cancel", workspaces.cancel_invite, methods=POST),
    Route(W + "/tokens", tokens.tokens, methods=BOTH),
    Route(W + "/tokens/{token_id}/revoke", tokens.revoke, methods=POST),
    Route(W + "/alerts", alerts.page, methods=BOTH),
    Route(W + "/alerts/webhooks/{webhook_id}/delete", alerts.delete_webhook, methods=POST),
    Route(W + "/alerts/rules/{rule_id}/delete", alerts.delete_rule, methods=POST),
    Route(W + "/alerts/deliveries/{delivery_id}", alerts.delivery, methods=GET),
    Route(W + "/alerts/deliveries/{delivery_id}/resend", alerts.resend, methods=POST),
    Route(W + "/counters/new", counters.create, methods=BOTH),
    Route(W + "/c/{counter_id}", counters.detail, methods=GET),
    Route(W + "/c/{counter_id}/counts", counters.counts, methods=GET),
    Route(W + "/c/{counter_id}/period", counters.period_fragment, methods=GET),
    Route(W + "/c/{counter_id}/stream", CounterStream(), methods=GET),
    Route(W + "/c/{counter_id}/data.json", counters.data, methods=GET),
    Route(W + "/c/{counter_id}/edit", counters.edit, methods=POST),
    Route(W + "/c/{counter_id}/rules", counters.set_rules, methods=POST),
    Route(W + "/c/{counter_id}/reset", counters.reset, methods=POST),
    Route(W + "/c/{counter_id}/delete", counters.delete, methods=POST),
    Route(W + "/shares", shares.manage, methods=BOTH),
    Route(W + "/shares/{share_id}/revoke", shares.revoke, methods=POST),
    Route("/s/{secret}", shares.page, methods=GET),
    Route("/s/{secret}/period", shares.period_fragment, methods=GET),
    Route("/s/{secret}/counts", shares.counts, methods=GET),
    Route("/s/{secret}/stream", shares.SharedStream(), methods=GET),
    Route("/s/{secret}/data.json", shares.data, methods=GET),
    Route("/p/{slug}", shares.page, methods=GET),
    Route("/p/{slug}/period", shares.period_fragment, methods=GET),
    Route("/p/{slug}/c/{counter_id}", shares.page, methods=GET),
    Route("/p/{slug}/c/{counter_id}/period", shares.period_fragment, methods=GET),
    Route("/p/{slug}/c/{counter_id}/counts", shares.counts, methods=GET),
    Route("/p/{slug}/c/{counter_id}/stream", shares.SharedStream(), methods=GET),
    Route("/p/{slug}/c/{counter_id}/data.json", shares.data, methods=GET),
    Mount("/static", StaticFiles(packages=[("tally.site", "static")]), name="static"),
]


async def _login_required(request: Request, exc: Exception) -> Response:
    if request.headers.get("hx-request"):
        # a live refresh of a page whose session ended: send the whole page to sign-in,
        # rather than the sign-in form into the refreshed fragment
        page = urlsplit(request.headers.get("hx-current-url", "")).path or "/"
        return Response(status_code=204, headers={"HX-Redirect": f"/login?next={page}"})
    return redirect(request, f"/login?next={request.url.path}")


async def _tally_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TallyError)
    return await render_error(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = NotFound("Page not found.") if exc.status_code == 404 else TallyError(exc.detail)
    error.status = exc.status_code
    return await render_error(request, error)


async def _storage_error(request: Request, exc: Exception) -> Response:
    log.warning("storage error on %s: %s", request.url.path, exc)
    return await render_error(request, Unavailable())


def site_windows(
    settings: Settings, token_key: bytes, nodes: LiveNodes | None = None
) -> SharedWindows | None:
    """With Redis, one sign-in throttle and one set of mail limits for the whole cluster
    (else each process keeps its own: the embedded server is one process); while Redis
    is away, each node's share of them by the live `nodes`."""
    if not settings.redis_url:
        return None
    from tally.storage.redis_windows import shared_windows

    return shared_windows(
        settings.redis_url,
        settings.redis_prefix + "throttle:",
        derive_key(token_key, b"throttle"),
        (lambda: 1) if nodes is None else (lambda: nodes.count),
    )


def site_accounts(
    settings: Settings, store: Store, outbox: Outbox, windows: SharedWindows | None = None
) -> Accounts:
    """The website's accounts, their email through `outbox` (the app stops it at
    shutdown) and `windows` (the cluster's sign-in throttle and mail limits in Redis);
    the metrics read what their sign-ins and emails came to."""
    return Accounts(
        store,
        outbox.mailer,
        settings.signup,
        LocalWindows() if windows is None else windows.windows,
        outbox=outbox,
    )


def create_site(
    settings: Settings,
    store: Store,
    counters_: Counters,
    token_key: bytes,
    streams: Streams,
    people: Accounts,
    poke_alerts: Callable[[], None] = lambda: None,
) -> SecurityHeaders:
    mailer = people.mailer
    app = Starlette(
        routes=ROUTES,
        exception_handlers={
            LoginRequired: _login_required,
            TallyError: _tally_error,
            HTTPException: _http_error,
            StorageError: _storage_error,
        },
    )
    app.state.site = Site(
        settings=settings,
        store=store,
        counters=counters_,
        accounts=people,
        mailer=mailer,
        token_key=token_key,
        csrf_key=derive_key(token_key, b"csrf"),
        streams=streams,
        poke_alerts=poke_alerts,
    )
    return SecurityHeaders(FormGate(BodyLimit(app)))
