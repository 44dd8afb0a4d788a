"""Shared dashboards (tally/shares.py): the owner's page of a workspace's shares, and the
shared pages themselves, read-only, for anyone with the link (no account, no session).

A shared page is a counter's (its live counts, through its stream, and its period) or
the workspace overview's (its period, the counters that changed most and the list with
sparklines, of its public counters and the private ones picked for it), and nothing
else: no link into the dashboard, no form, no other counter. Every request of one
resolves its share first (an unknown one is a 404, a revoked or expired one a 410),
spends the client's budget of shared pages (TALLY_SHARE_RATE_LIMIT, its own), and reads
only what the share names; a stream re-resolves it at each heartbeat, so a revoked
share's open streams end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tally import periods, shares, stats, workspaces
from tally.errors import BadRequest, NotFound, RateLimited, TallyError
from tally.links import secret_hash
from tally.models import Counter, Share, Workspace
from tally.numbers import row_id
from tally.site import overview, period_view
from tally.site.counters import chart_data, load_workspace, period_numbers, read_list
from tally.site.counters import periods as counter_periods
from tally.site.live import HEADERS, RECHECK
from tally.site.pages import (
    base_url,
    client_key,
    field,
    form,
    path_id,
    redirect,
    redirect_revealing,
    render,
    revealed,
    signed_in,
    site,
)
from tally.storage.overview import Scope
from tally.web.http import Receive, Send
from tally.web.http import Scope as AsgiScope

MAX_SECRET = 100


@dataclass(frozen=True, slots=True)
class Shared:
    share: Share
    workspace: Workspace
    counter: Counter | None
    base: str  # the shared page's path: its period, counts and stream are under it

    @property
    def scope(self) -> Scope:
        return Scope(public_only=True, included=self.share.include_private)


async def _limit(request: Request) -> None:
    limiter = site(request).counters.share_views
    if limiter is None:
        return
    decision = await limiter.hit(("share", client_key(request)), time.monotonic())
    if not decision.allowed:
        retry = [(b"retry-after", b"%d" % max(1, round(decision.retry_after + 0.5)))]
        raise RateLimited("Too many requests of shared pages: try again shortly.", retry)


async def find(request: Request) -> Share | None:
    """The share the path names, revoked and expired ones included."""
    store = site(request).store
    params = request.path_params
    if "secret" in params:
        secret = params["secret"]
        if not 20 <= len(secret) <= MAX_SECRET or not secret.isascii():
            return None
        return await store.find_secret_share(secret_hash(secret))
    counter_id = path_id(request, "counter_id", "counter") if "counter_id" in params else None
    return await store.find_public_share(params["slug"], counter_id)


async def resolve(request: Request) -> Shared:
    """The share of the path, if it may be seen now, with what it shows."""
    if "counter_id" in request.path_params:  # a malformed id is a 404 before any work
        path_id(request, "counter_id", "counter")
    await _limit(request)
    share = shares.usable(await find(request), time.time())
    store = site(request).store
    ws = await store.get_workspace_by_id(share.workspace_id)
    if ws is None:
        raise NotFound("No such shared page.")
    counter = None
    if share.counter_id is not None:
        counter = await store.get_counter_by_id(share.counter_id)
        if counter is None or counter.workspace_id != ws.id:
            raise NotFound("No such shared page.")
    params = request.path_params
    if "secret" in params:
        base = f"/s/{params['secret']}"
    else:
        base = f"/p/{ws.slug}" + ("" if counter is None else f"/c/{counter.id}")
    return Shared(share, ws, counter, base)


def _private(response: Response) -> Response:
    # a secret link's page is for its holders: no index (never cached: SecurityHeaders)
    response.headers["x-robots-tag"] = "noindex"
    return response


async def page(request: Request) -> Response:
    """GET /s/{secret}, /p/{slug}, /p/{slug}/c/{counter_id}: the shared page."""
    shared = await resolve(request)
    period = period_view.chosen(request, time.time(), _zone(request, shared))
    fragment = f"{shared.base}/period?{urlencode(period.query())}"
    if shared.counter is not None:
        counter = shared.counter
        summary, chart = await period_numbers(request, counter, period)
        s = site(request)
        view = await s.counters.current(counter)
        tz = s.counters.zone(counter)
        now = time.time()
        since = stats.settled_before(now, tz)
        recent = counter_periods(await s.counters.history(counter, since), now, tz)
        return _private(
            render(
                request,
                "shared_counter.html",
                counter=counter,
                shared_ws=shared.workspace,
                view=view,
                recent=recent,
                live_base=shared.base,
                period_keep={},
                period_fragment=fragment,
                **period_view.context(period, summary, chart),
            )
        )
    listed = await read_list(request, shared.workspace, period.query(), shared.scope)
    numbers = await overview.view(
        request, shared.workspace, period, shared.scope, **listed["list_keep"]
    )
    ids = [c.id for c in listed["result"].counters]
    return _private(
        render(
            request,
            "shared_overview.html",
            shared_ws=shared.workspace,
            **listed,
            **numbers,
            period_keep=listed["list_keep"],
            period_fragment=fragment,
            sparklines=await overview.sparklines(request, ids, period),
        )
    )


def _zone(request: Request, shared: Shared) -> Any:
    return periods.zone(shared.workspace.timezone, site(request).settings.timezone)


async def period_fragment(request: Request) -> Response:
    """The shared page's period section alone (its live refresh reloads it)."""
    shared = await resolve(request)
    period = period_view.chosen(request, time.time(), _zone(request, shared))
    if shared.counter is not None:
        summary, chart = await period_numbers(request, shared.counter, period)
    else:
        summary, chart = await overview.workspace_period(
            request, shared.workspace, period, shared.scope
        )
    return _private(
        render(
            request,
            "_period.html",
            **period_view.context(period, summary, chart),
            period_keep={},
            period_fragment="",
        )
    )


async def counts(request: Request) -> Response:
    """A shared counter's live counts fragment (live.js, when its stream is refused)."""
    shared = await resolve(request)
    if shared.counter is None:
        raise NotFound("No such shared page.")
    view = await site(request).counters.current(shared.counter)
    return _private(
        render(
            request,
            "_counts.html",
            workspace=shared.workspace,
            counter=shared.counter,
            view=view,
            live_base=shared.base,
        )
    )


async def data(request: Request) -> Response:
    """A shared counter's chart data, as its dashboard page's (data.json)."""
    shared = await resolve(request)
    if shared.counter is None:
        raise NotFound("No such shared page.")
    return _private(JSONResponse(await chart_data(request, shared.counter)))


class SharedStream:
    """GET .../stream of a shared counter: its live counts, as the dashboard's stream
    (tally/site/live.py) with the share in place of a session, checked again at every
    heartbeat and at most every RECHECK seconds: a revoked or expired share ends it."""

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        shared = await resolve(request)
        if shared.counter is None:
            raise NotFound("No such shared page.")
        s = site(request)
        counter = shared.counter
        recheck = min(RECHECK, s.streams.heartbeat)
        checked_at = time.monotonic()

        async def check(heartbeat: bool) -> Counter:
            nonlocal checked_at
            if heartbeat or time.monotonic() - checked_at >= recheck:
                shares.usable(await find(request), time.time())
                checked_at = time.monotonic()
            return counter

        await s.streams.serve(
            receive,
            send,
            client_key(request),
            counter.id,
            check,
            HEADERS,
            f"{shared.workspace.slug}/{counter.name} (shared)",
        )


# -- the owner's page ------------------------------------------------------------------


def _row(share: Share, names: dict[int, str], now: float) -> dict[str, Any]:
    state = "live"
    if share.revoked_at is not None:
        state = "revoked"
    elif share.expires_at is not None and share.expires_at <= now:
        state = "expired"
    target = "Overview" if share.counter_id is None else names.get(share.counter_id, "?")
    return {"share": share, "target": target, "state": state, "path": shares.path(share)}


async def _names(request: Request, listed: list[Share]) -> dict[int, str]:
    names = {}
    store = site(request).store
    for counter_id in {s.counter_id for s in listed if s.counter_id is not None}:
        counter = await store.get_counter_by_id(counter_id)
        if counter is not None:
            names[counter_id] = counter.name
    return names


async def manage(request: Request) -> Response:
    """GET /w/{slug}/shares: the workspace's shares and the form for a new one; POST
    makes one (of the overview, or of the counter `counter_id`) and shows its link once."""
    _, ws, role = await load_workspace(request)
    workspaces.require_role(role, "share")
    store = site(request).store
    error, status = None, 200
    if request.method == "POST":
        data = await form(request)
        try:
            share, secret = await _create(request, ws, data)
        except TallyError as exc:
            error, status = exc.message[0].upper() + exc.message[1:] + ".", exc.status
        else:
            # Post/Redirect/Get: a reload or Back makes no second share; the page after
            # the redirect shows a secret link once
            return redirect_revealing(request, f"/w/{ws.slug}/shares", f"{share.id}:{secret or ''}")
    made = await _just_made(request, ws)
    listed = await store.list_shares(ws.id)
    names = await _names(request, listed)
    now = time.time()
    return render(
        request,
        "shares.html",
        status,
        workspace=ws,
        role=role,
        section="shares",
        error=error,
        made=made,
        base=base_url(request),
        rows=[_row(s, names, now) for s in reversed(listed)],
    )


async def _create(request: Request, ws: Workspace, data: Any) -> tuple[Share, str | None]:
    session = await signed_in(request)
    store = site(request).store
    text = field(data, "counter_id").strip()
    counter_id = None
    if text:
        if not (text.isascii() and text.isdigit() and len(text) < 19):
            raise NotFound("no such counter in this workspace")
        counter_id = int(text)
    include = []
    for name in field(data, "include").splitlines():
        if name.strip():
            counter = await store.read_counter(ws.slug, name.strip())
            if counter is None:
                raise BadRequest(f"{name.strip()!r} is no counter of this workspace")
            include.append(counter.id)
    days_text = field(data, "expires").strip()
    if days_text and not (days_text.isascii() and days_text.isdigit()):
        raise BadRequest("the expiry must be a whole number of days")
    days = shares.check_days(int(days_text[:6]) if days_text else None)
    return await shares.create(
        store,
        ws.id,
        counter_id,
        public=field(data, "kind") == "public",
        name=field(data, "name"),
        days=days,
        include=tuple(include),
        created_by=session.account.id,
    )


async def _just_made(request: Request, ws: Workspace) -> dict[str, Any] | None:
    """The share the POST before the redirect made ("ID:SECRET", `redirect_revealing`),
    checked against the store: a share of this workspace, and for a secret link the
    secret whose hash it keeps (a forged cookie shows nothing)."""
    shown = revealed(request)
    text, _, secret = shown.partition(":")
    share_id = row_id(text) if shown else None
    share = None if share_id is None else await site(request).store.get_share(ws.id, share_id)
    if share is None:
        return None
    if not share.public:
        found = await site(request).store.find_secret_share(secret_hash(secret)) if secret else None
        if found is None or found.id != share.id:
            return None
    return {"share": share, "url": base_url(request) + (shares.path(share, secret or None) or "")}


async def revoke(request: Request) -> Response:
    _, ws, role = await load_workspace(request)
    workspaces.require_role(role, "share")
    await form(request)
    share_id = path_id(request, "share_id", "share")
    if not await site(request).store.revoke_share(ws.id, share_id, time.time()):
        raise NotFound("No such share, or it is revoked already.")
    return redirect(request, f"/w/{ws.slug}/shares", "The share is revoked: its link answers 410.")
