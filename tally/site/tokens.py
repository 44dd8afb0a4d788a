"""The tokens page: list, create (shown once), revoke."""

from __future__ import annotations

import time

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from tally import workspaces
from tally.auth import IssuedToken, hash_token, issue_token
from tally.errors import BadRequest, Forbidden, NotFound, TallyError
from tally.models import Account, Permission, Role
from tally.site.pages import (
    base_url,
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

EXPIRY_DAYS = {"": None, "7": 7, "30": 30, "90": 90, "365": 365}


async def tokens(request: Request) -> Response:
    session = await signed_in(request)
    s = site(request)
    ws, role = await workspaces.membership(s.store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "tokens")
    error, status = None, 200
    if request.method == "POST":
        data = await form(request)
        try:
            issued = await _issue(request, data, ws.id, role, session.account)
        except TallyError as exc:
            error, status = exc.message, exc.status
        else:
            # Post/Redirect/Get: a reload or Back makes no second token; the page after
            # the redirect shows the secret, once
            return redirect_revealing(request, f"/w/{ws.slug}/tokens", issued.secret)
    return render(
        request,
        "tokens.html",
        status,
        error=error,
        workspace=ws,
        role=role,
        section="tokens",
        tokens=await s.store.list_tokens(ws.id),
        creators=await s.store.token_creators(ws.id),
        issued=await _just_issued(request, ws.id, session.account.id),
        base=base_url(request),
        now=time.time(),
    )


async def _issue(
    request: Request, data: FormData, workspace_id: int, role: Role, account: Account
) -> IssuedToken:
    s = site(request)
    if not account.verified:
        raise Forbidden("Confirm your email address before you create tokens.")
    try:
        permission = Permission.parse(field(data, "permission"))
    except ValueError:
        raise BadRequest("Choose a permission: read, write or admin.") from None
    workspaces.require_role(role, workspaces.token_action(permission))
    name = workspaces.check_token_name(field(data, "name"))
    if field(data, "expires") not in EXPIRY_DAYS:
        raise BadRequest("Choose when the token expires.")
    days = EXPIRY_DAYS[field(data, "expires")]
    expires_at = None if days is None else time.time() + days * 86400
    return await issue_token(
        s.store, s.token_key, workspace_id, permission, name, expires_at, created_by=account.id
    )


async def _just_issued(request: Request, workspace_id: int, account_id: int) -> IssuedToken | None:
    """The token this account just made here, to show its secret once: only a secret that
    is a live token of this workspace made by this account (a planted cookie shows
    nothing)."""
    secret = revealed(request)
    if not secret:
        return None
    s = site(request)
    token = await s.store.find_token(hash_token(s.token_key, secret))
    if (
        token is None
        or token.workspace_id != workspace_id
        or token.created_by != account_id
        or not token.usable(time.time())
    ):
        return None
    return IssuedToken(token, secret)


async def revoke(request: Request) -> Response:
    session = await signed_in(request)
    s = site(request)
    ws, role = await workspaces.membership(s.store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "tokens")
    await form(request)
    token_id = path_id(request, "token_id", "token in this workspace")
    token = next((t for t in await s.store.list_tokens(ws.id) if t.id == token_id), None)
    if token is None:  # another workspace's token is not ours to name
        raise NotFound("No such token in this workspace.")
    workspaces.require_role(role, workspaces.token_action(token.permission))
    await s.store.revoke_token(token.id)
    return redirect(
        request,
        f"/w/{ws.slug}/tokens",
        f"Token {token.name or token.prefix} is revoked; servers refuse it within "
        f"{s.settings.token_cache_ttl:g} s.",
    )
