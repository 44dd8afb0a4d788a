"""Workspace pages: create, settings (rename, allowed origins, V1, page views, delete),
the export download, members and invitations."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tally import periods, rules, workspaces
from tally.accounts import check_email
from tally.errors import BadRequest, NotFound, StorageError, TallyError
from tally.exports import export_jsonl
from tally.links import secret_hash
from tally.models import Role, Workspace
from tally.site.pages import (
    FormError,
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
from tally.storage.base import Store

log = logging.getLogger("tally.site")


def _role(text: str) -> Role:
    try:
        return Role.parse(text)
    except ValueError:
        raise BadRequest("Choose a role: viewer, editor or owner.") from None


async def create(request: Request) -> Response:
    session = await signed_in(request)
    if request.method == "GET":
        return render(request, "workspace_new.html", slug="", name="")
    data = await form(request)
    slug, name = field(data, "slug"), field(data, "name")
    try:
        ws = await workspaces.create(site(request).store, session.account, slug, name)
    except TallyError as exc:
        return render(
            request, "workspace_new.html", exc.status, error=exc.message, slug=slug, name=name
        )
    return redirect(request, f"/w/{ws.slug}", f"Workspace {ws.slug} created.")


async def settings(request: Request) -> Response:
    session = await signed_in(request)
    store = site(request).store
    ws, role = await workspaces.membership(store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "manage_workspace")
    context = await _settings_context(request, store, ws, role)
    if request.method == "GET":
        return render(request, "workspace_settings.html", **context)
    data = await form(request)
    try:
        await store.rename_workspace(ws.id, workspaces.check_display_name(field(data, "name")))
    except TallyError as exc:
        context["name_form"] = field(data, "name")
        context["form_error"] = FormError("name-form", rules.sentence(exc.message), ("name",))
        return render(request, "workspace_settings.html", exc.status, **context)
    return redirect(request, f"/w/{ws.slug}/settings", "The name is changed.")


async def _settings_context(
    request: Request, store: Store, ws: Workspace, role: Role, **rules_form: str
) -> dict[str, Any]:
    """The settings page's context; the rules form as stored unless given as submitted."""
    counters, own = await store.counter_usage(ws.id)
    return {
        "server_zone": periods.zone_name(site(request).settings.timezone),
        "timezone_form": ws.timezone,
        "zones": periods.zone_names(),
        "workspace": ws,
        "role": role,
        "section": "settings",
        "embed": embed_snippets(base_url(request), ws),
        "name_form": ws.name,
        "saved_origins": "\n".join(ws.origins),
        "rules_form": rules_form
        or {"origins": "\n".join(ws.origins), "v1": "open" if ws.v1_open else ""},
        "quota": {
            "counters": counters,
            "limit": store.counter_quota if own is None else own,  # 0: none
            "own": "" if own is None else str(own),
            "server": store.counter_quota,
        },
    }


def embed_snippets(base: str, ws: Workspace) -> dict[str, str]:
    """The page-view and widget snippets of the settings page, each script pinned by its
    versioned URL and SRI hash (tally.web.scripts)."""
    from tally.web.scripts import script

    count, widget = script("count.js"), script("widget.js")
    return {
        "count": f'<script async src="{base}{count.versioned}" integrity="{count.integrity}" '
        f'crossorigin="anonymous" data-workspace="{ws.slug}"></script>',
        "pixel": f'<noscript><img src="{base}/count.gif?workspace={ws.slug}&page=/PATH/" '
        'alt="" width="1" height="1"></noscript>',
        "widget": f'<script async src="{base}{widget.versioned}" integrity="{widget.integrity}" '
        f'crossorigin="anonymous"></script>\n'
        f'<tally-counter workspace="{ws.slug}" name="NAME"></tally-counter>',
    }


async def set_pages(request: Request) -> Response:
    """Page counting (tally.pageviews): on or off, and whether it honours Do-Not-Track /
    Global Privacy Control. On needs the workspace's allowed origins."""
    session = await signed_in(request)
    store = site(request).store
    ws, role = await workspaces.membership(store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "manage_workspace")
    data = await form(request)
    page_views, honour_dnt = field(data, "pages") == "on", field(data, "dnt") == "on"
    try:
        if page_views:
            rules.check_page_views(ws.origins)
    except TallyError as exc:
        context = await _settings_context(request, store, ws, role)
        context["form_error"] = FormError("pages", rules.sentence(exc.message), ("pages",))
        return render(request, "workspace_settings.html", exc.status, **context)
    if await store.set_page_counting(ws.id, page_views=page_views, honour_dnt=honour_dnt) is None:
        raise NotFound("No such workspace.")
    return redirect(request, f"/w/{ws.slug}/settings", "Page counting is saved.")


async def set_timezone(request: Request) -> Response:
    """The workspace's time zone (empty: the server's, TALLY_TIMEZONE)."""
    session = await signed_in(request)
    s = site(request)
    ws, role = await workspaces.membership(s.store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "manage_workspace")
    data = await form(request)
    try:
        zone = periods.check_zone(field(data, "timezone"))
    except TallyError as exc:
        context = await _settings_context(request, s.store, ws, role)
        context["timezone_form"] = field(data, "timezone")
        context["form_error"] = FormError("timezone", rules.sentence(exc.message), ("timezone",))
        return render(request, "workspace_settings.html", exc.status, **context)
    await s.store.set_workspace_timezone(ws.id, zone)
    s.counters.cache.forget_workspace(ws.slug)
    shown = zone or f"the server's ({periods.zone_name(s.settings.timezone)})"
    return redirect(request, f"/w/{ws.slug}/settings", f"The time zone is {shown}.")


async def set_quota(request: Request) -> Response:
    """The workspace's own counter quota (empty: the server's, TALLY_COUNTER_QUOTA)."""
    session = await signed_in(request)
    store = site(request).store
    ws, role = await workspaces.membership(store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "manage_workspace")
    data = await form(request)
    text = field(data, "quota").strip().replace(",", "").replace("_", "")
    try:
        if text and not (text.isascii() and text.isdigit()):
            raise BadRequest("the counter quota must be a whole number")
        quota = workspaces.check_counter_quota(int(text) if text else None, store.counter_quota)
    except TallyError as exc:
        context = await _settings_context(request, store, ws, role)
        context["quota"]["own"] = field(data, "quota")
        context["form_error"] = FormError("quota", rules.sentence(exc.message), ("quota",))
        return render(request, "workspace_settings.html", exc.status, **context)
    await store.set_counter_quota(ws.id, quota)
    return redirect(request, f"/w/{ws.slug}/settings", "The counter quota is saved.")


async def set_rules(request: Request) -> Response:
    """The workspace's allowed origins and whether it is open for the V1 endpoints."""
    session = await signed_in(request)
    store = site(request).store
    ws, role = await workspaces.membership(store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "manage_workspace")
    data = await form(request)
    v1_open = field(data, "v1") == "open"
    try:
        origins = rules.parse_origins(field(data, "origins"))
    except TallyError as exc:
        submitted = {"origins": field(data, "origins"), "v1": field(data, "v1")}
        context = await _settings_context(request, store, ws, role, **submitted)
        context["form_error"] = FormError("rules", rules.sentence(exc.message), ("origins",))
        return render(request, "workspace_settings.html", exc.status, **context)
    if await store.set_workspace_rules(ws.id, v1_open=v1_open, origins=origins) is None:
        raise NotFound("No such workspace.")
    return redirect(request, f"/w/{ws.slug}/settings", "The counting rules are saved.")


async def delete(request: Request) -> Response:
    session = await signed_in(request)
    store = site(request).store
    ws, role = await workspaces.membership(store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "manage_workspace")
    data = await form(request)
    try:
        await workspaces.delete(store, ws, field(data, "confirm"))
    except TallyError as exc:
        context = await _settings_context(request, store, ws, role)
        context["form_error"] = FormError("delete", rules.sentence(exc.message), ("confirm",))
        return render(request, "workspace_settings.html", exc.status, **context)
    return redirect(request, "/", f"Workspace {ws.slug} and everything in it is deleted.")


async def export(request: Request) -> Response:
    """GET /w/{slug}/export: the workspace's export file (tally/exports.py), as the API's
    Admin download (/export/{slug}) and `tally export` write it, streamed a page of
    counters at a time. A database failure mid-file leaves out the `end` line, so
    `tally import` refuses the cut file."""
    session = await signed_in(request)
    store = site(request).store
    ws, role = await workspaces.membership(store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "export")

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in export_jsonl(store, [ws]):
                yield chunk
        except StorageError as exc:
            log.warning("export of %s cut short: %s", ws.slug, exc)

    return StreamingResponse(
        chunks(),
        media_type="application/x-ndjson",
        headers={"content-disposition": f'attachment; filename="tally-{ws.slug}.jsonl"'},
    )


async def members(request: Request) -> Response:
    session = await signed_in(request)
    s = site(request)
    ws, role = await workspaces.membership(s.store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "view")
    error, status = None, 200
    if request.method == "POST":
        data = await form(request)
        workspaces.require_role(role, "manage_members")
        try:
            email = field(data, "email")
            link = await workspaces.invite(
                s.store,
                s.accounts.outbox,
                s.accounts.windows,
                session.account,
                client_key(request),
                ws,
                check_email(email),
                _role(field(data, "role")),
                base_url(request),
            )
        except TallyError as exc:
            error, status = exc.message, exc.status
        else:
            # Post/Redirect/Get: a reload or Back invites nobody twice; the page after
            # the redirect shows the link, once
            secret = link.rsplit("/", 1)[1]
            return redirect_revealing(
                request, f"/w/{ws.slug}/members", secret, f"{email.strip()} is invited."
            )
    return render(
        request,
        "members.html",
        status,
        error=error,
        workspace=ws,
        role=role,
        section="members",
        members=await s.store.list_members(ws.id),
        invites=await s.store.list_invites(ws.id, time.time()),
        invite_link=await _just_invited(request, ws),
        me=session.account.id,
    )


async def _just_invited(request: Request, ws: Workspace) -> str | None:
    """The invitation link just made here, to show once: only the secret of a live
    invitation to this workspace (a planted cookie shows nothing)."""
    secret = revealed(request)
    if not secret:
        return None
    link = await site(request).store.peek_one_time("invite", secret_hash(secret), time.time())
    if link is None or link.workspace_id != ws.id:
        return None
    return f"{base_url(request)}/invite/{secret}"


async def member_change(request: Request) -> Response:
    """POST /w/{slug}/members/{account_id}: change the role (`role`) or remove (`remove`)."""
    session = await signed_in(request)
    store = site(request).store
    ws, role = await workspaces.membership(store, session.account, request.path_params["slug"])
    account_id = path_id(request, "account_id", "member")
    data = await form(request)
    leaving = account_id == session.account.id and field(data, "action") == "remove"
    if not leaving:
        workspaces.require_role(role, "manage_members")
    target = f"/w/{ws.slug}/members"
    try:
        if field(data, "action") == "remove":
            revoked, cancelled = await workspaces.remove_member(
                store, ws, account_id, revoke_tokens=field(data, "revoke_tokens") == "yes"
            )
            left = _left_behind(revoked, cancelled)
            if leaving:
                return redirect(request, "/", f"You left {ws.name}.{left}")
            return redirect(request, target, f"The member is removed.{left}")
        await workspaces.set_role(store, ws, account_id, _role(field(data, "role")))
    except TallyError as exc:
        return redirect(request, target, exc.message)
    return redirect(request, target, "The role is changed.")


def _left_behind(revoked: int, cancelled: int) -> str:
    said = []
    if revoked:
        said.append(f"{revoked} token{'s' if revoked > 1 else ''} revoked")
    if cancelled:
        said.append(f"{cancelled} invitation{'s' if cancelled > 1 else ''} cancelled")
    return f" {' and '.join(said).capitalize()}." if said else ""


async def cancel_invite(request: Request) -> Response:
    session = await signed_in(request)
    store = site(request).store
    ws, role = await workspaces.membership(store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "manage_members")
    await form(request)
    invite_id = path_id(request, "invite_id", "invitation")
    await store.cancel_invite(ws.id, invite_id, time.time())
    return redirect(request, f"/w/{ws.slug}/members", "The invitation is cancelled.")
