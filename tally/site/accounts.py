"""Account pages: sign up, verify the email, sign in and out, change or reset the password,
accept an invitation."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tally import workspaces
from tally.accounts import check_email
from tally.errors import TallyError
from tally.models import Account, Role
from tally.site import security
from tally.site.pages import (
    Site,
    base_url,
    client_key,
    field,
    form,
    redirect,
    redirect_revealing,
    render,
    revealed,
    signed_in,
    site,
    start_session,
    visitor,
)


async def home(request: Request) -> Response:
    session = await visitor(request)
    if session is None:
        s = site(request)
        # a new instance opens on making its first account (which owns `default`)
        if s.settings.signup == "open" and await s.store.count_accounts() == 0:
            return redirect(request, "/signup")
        return redirect(request, "/login")
    memberships = await site(request).store.memberships(session.account.id)
    if len(memberships) == 1:
        return redirect(request, f"/w/{memberships[0].workspace.slug}")
    return render(request, "home.html", memberships=memberships)


async def signup(request: Request) -> Response:
    invite = request.query_params.get("invite", "")
    if request.method == "GET":
        s = site(request)
        sent_to = _sent_to(request)
        if sent_to:
            return render(
                request,
                "signup.html",
                email=sent_to,
                invite="",
                sent=True,
                mails=s.mailer.configured,
            )
        first = not invite and await s.store.count_accounts() == 0
        return await _signup_page(request, 200, email="", invite=invite, first=first)
    data = await form(request)
    email, invite = field(data, "email"), field(data, "invite")
    s = site(request)
    try:
        account = await s.accounts.sign_up(
            email, field(data, "password"), base_url(request), invite, client_key(request)
        )
    except TallyError as exc:
        return await _signup_page(
            request, exc.status, error=exc.message, email=email, invite=invite
        )
    if account is not None and await _landing(s, account) == f"/w/{workspaces.BOOTSTRAP}":
        # The instance's first account, which now owns `default`: signed in at once and
        # taken where the Quick start counted. Nothing to hide here: no address had an
        # account, and one account only ever claims `default`.
        secret = await s.accounts.start_session(account)
        notice = f"Welcome: {account.email} owns the workspace {workspaces.BOOTSTRAP}."
        return start_session(
            request, redirect(request, f"/w/{workspaces.BOOTSTRAP}", notice), secret
        )
    # The same page whether the address was free (a new account, a confirmation link
    # mailed) or taken (its account mailed a note): the page tells nobody which. After a
    # redirect (a reload signs up nobody twice), which shows the address once.
    return redirect_revealing(request, "/signup", email.strip())


async def _signup_page(request: Request, status: int, **context: Any) -> Response:
    """The sign-up page; with an invitation, what it is (who invited whom, to which
    workspace, in which role) or why it works no more."""
    invite = context.get("invite", "")
    invitation = None
    if invite:
        invitation = await workspaces.read_invitation(site(request).store, invite, time.time())
        if status == 200 and invitation.state != "open":
            status = 404 if invitation.state == "unknown" else 410
    return render(request, "signup.html", status, invitation=invitation, **context)


def _sent_to(request: Request) -> str:
    """The address a sign-up or reset request just went to, shown once after its
    redirect ("" if none, or not an address)."""
    try:
        return check_email(revealed(request))
    except TallyError:
        return ""


async def verify(request: Request) -> Response:
    """A confirmation link: confirms its account; if it no longer works, says why: the
    address is confirmed already (with a way on), or the link expired (with a button
    for a new one), or it is not a link at all."""
    s = site(request)
    secret = request.path_params["secret"]
    account = await s.accounts.verify_email(secret)
    if account is not None:
        # where its counts are: `default` for the account that owns it
        where = await _landing(s, account)
        return redirect(request, where, f"Thank you: {account.email} is confirmed.")
    await visitor(request)  # the page's header as the visitor is signed in
    found = await s.accounts.account_of_link(secret)
    if found is not None and found[0].verified:
        return render(request, "verify.html", 200, state="confirmed", email=found[0].email)
    if found is not None:  # expired (or used, but the address is not confirmed)
        return render(request, "verify.html", 410, state="expired", secret=secret, email="")
    return render(request, "verify.html", 400, state="unknown", email="")


async def resend_from_link(request: Request) -> Response:
    """POST /verify/{secret}/resend: a new confirmation link for the account of an expired
    one, signed in or not (the mail limits apply: MAIL_FROM, MAIL_TO)."""
    await form(request)
    s = site(request)
    secret = request.path_params["secret"]
    session = await visitor(request)
    try:
        account = await s.accounts.resend_verification(
            secret, base_url(request), client_key(request)
        )
    except TallyError as exc:
        return render(
            request,
            "verify.html",
            exc.status,
            state="expired",
            secret=secret,
            email="",
            error=exc.message,
        )
    where = "/account" if session is not None else "/login"
    return redirect(
        request, where, f"We sent a new confirmation link to {account.email}: it works for 3 days."
    )


async def resend_verification(request: Request) -> Response:
    session = await signed_in(request)
    await form(request)
    if session.account.verified:
        return redirect(request, "/account", "Your email is already confirmed.")
    if not await site(request).accounts.send_verification(session.account, base_url(request)):
        return redirect(
            request, "/account", "We sent several links in the last hour: check your inbox."
        )
    return redirect(request, "/account", "We sent a new confirmation link.")


async def login(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "login.html", email="", next=request.query_params.get("next", ""))
    data = await form(request)
    email, target = field(data, "email"), field(data, "next")
    s = site(request)
    try:
        account = await s.accounts.log_in(email, field(data, "password"), client_key(request))
    except TallyError as exc:
        return render(
            request, "login.html", exc.status, error=exc.message, email=email, next=target
        )
    secret = await s.accounts.start_session(account)
    # only a local path: never an open redirect
    safe = target if target.startswith("/") and not target.startswith("//") else ""
    return start_session(request, redirect(request, safe or await _landing(s, account)), secret)


async def _landing(s: Site, account: Account) -> str:
    """Where a sign-in without a `next` lands: the bootstrap workspace for the account
    that owns it (the Quick start counted there), else the workspaces (or the only one)."""
    memberships = await s.store.memberships(account.id)
    for m in memberships:
        if m.workspace.slug == workspaces.BOOTSTRAP and m.role == Role.OWNER:
            return f"/w/{m.workspace.slug}"
    return "/"


async def logout(request: Request) -> Response:
    await form(request)
    secret = request.cookies.get(security.SESSION_COOKIE)
    if secret:
        await site(request).accounts.log_out(secret)
    response = redirect(request, "/login", "You are signed out.")
    response.delete_cookie(security.SESSION_COOKIE, path="/")
    return response


async def logout_everywhere(request: Request) -> Response:
    session = await signed_in(request)
    await form(request)
    await site(request).accounts.log_out_everywhere(session.account.id)
    response = redirect(request, "/login", "You are signed out on every device.")
    response.delete_cookie(security.SESSION_COOKIE, path="/")
    return response


async def account(request: Request) -> Response:
    session = await signed_in(request)
    if request.method == "GET":
        return render(request, "account.html", section="account")
    data = await form(request)
    s = site(request)
    try:
        await s.accounts.change_password(
            session.account, field(data, "current_password"), field(data, "new_password")
        )
    except TallyError as exc:
        return render(request, "account.html", exc.status, error=exc.message, section="account")
    fresh = await s.store.get_account(session.account.id)
    assert fresh is not None
    secret = await s.accounts.start_session(fresh)
    notice = "Your password is changed; other devices are signed out."
    return start_session(request, redirect(request, "/account", notice), secret)


async def forgot(request: Request) -> Response:
    mails = site(request).mailer.configured
    if request.method == "GET":
        sent_to = _sent_to(request)
        return render(request, "forgot.html", email=sent_to, sent=bool(sent_to), mails=mails)
    data = await form(request)
    email = field(data, "email")
    try:
        await site(request).accounts.request_reset(email, base_url(request), client_key(request))
    except TallyError as exc:
        return render(
            request,
            "forgot.html",
            exc.status,
            error=exc.message,
            email=email,
            sent=False,
            mails=mails,
        )
    # the same answer, in the same time, whether the account exists or not: the lookup
    # and the email happen off the request; after a redirect, which shows the address once
    return redirect_revealing(request, "/forgot", email.strip())


async def reset(request: Request) -> Response:
    secret = request.path_params["secret"]
    s = site(request)
    if request.method == "GET":
        valid = await s.accounts.reset_link_valid(secret)
        return render(request, "reset.html", 200 if valid else 400, valid=valid)
    data = await form(request)
    try:
        account = await s.accounts.reset_password(secret, field(data, "new_password"))
    except TallyError as exc:
        return render(request, "reset.html", exc.status, error=exc.message, valid=True)
    new = await s.accounts.start_session(account)
    return start_session(request, redirect(request, "/", "Your password is set."), new)


async def invitation(request: Request) -> Response:
    """An invitation link: who invited whom, to which workspace, in which role, or why
    it works no more (accepted, cancelled, expired, not a link); signed out, the sign-up
    form for the invited address (or a way to sign in); signed in, the button to accept."""
    secret = request.path_params["secret"]
    session = await visitor(request)
    if session is None:
        if request.method == "POST":
            return redirect(request, f"/invite/{secret}")
        return await _signup_page(request, 200, email="", invite=secret, first=False)
    s = site(request)
    invitation = await workspaces.read_invitation(s.store, secret, time.time())
    status = 200 if invitation.state == "open" else 404 if invitation.state == "unknown" else 410
    if request.method == "GET":
        return render(request, "invite.html", status, secret=secret, invitation=invitation)
    await form(request)
    try:
        ws = await workspaces.accept_invite(s.store, session.account, secret)
    except TallyError as exc:
        invitation = await workspaces.read_invitation(s.store, secret, time.time())
        return render(
            request,
            "invite.html",
            exc.status,
            error=exc.message,
            secret=secret,
            invitation=invitation,
        )
    return redirect(request, f"/w/{ws.slug}", f"You joined {ws.name}.")
