"""Account pages: sign up, verify the email, sign in and out, change or reset the password,
accept an invitation."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tally import workspaces
from tally.errors import TallyError
from tally.site import security
from tally.site.pages import (
    base_url,
    client_key,
    field,
    form,
    redirect,
    render,
    signed_in,
    site,
    start_session,
    visitor,
)


async def home(request: Request) -> Response:
    session = await visitor(request)
    if session is None:
        return redirect(request, "/login")
    memberships = await site(request).store.memberships(session.account.id)
    if len(memberships) == 1:
        return redirect(request, f"/w/{memberships[0].workspace.slug}")
    return render(request, "home.html", memberships=memberships)


async def signup(request: Request) -> Response:
    invite = request.query_params.get("invite", "")
    if request.method == "GET":
        return render(request, "signup.html", email="", invite=invite)
    data = await form(request)
    email, invite = field(data, "email"), field(data, "invite")
    s = site(request)
    try:
        done = await s.accounts.sign_up(email, field(data, "password"), base_url(request), invite)
    except TallyError as exc:
        return render(
            request, "signup.html", exc.status, error=exc.message, email=email, invite=invite
        )
    secret = await s.accounts.start_session(done.account)
    notice = (
        "Welcome! Check your email for the link that confirms your address."
        if not done.account.verified
        else "Welcome!"
    )
    return start_session(request, redirect(request, f"/w/{done.workspace_slug}", notice), secret)


async def verify(request: Request) -> Response:
    account = await site(request).accounts.verify_email(request.path_params["secret"])
    if account is None:
        return render(
            request,
            "error.html",
            400,
            status=400,
            message="This confirmation link is invalid, used or expired. "
            "Sign in and ask for a new one on your account page.",
        )
    return redirect(request, "/", f"Thank you: {account.email} is confirmed.")


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
    safe = target if target.startswith("/") and not target.startswith("//") else "/"
    return start_session(request, redirect(request, safe), secret)


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
    if request.method == "GET":
        return render(request, "forgot.html", email="", sent=False)
    data = await form(request)
    email = field(data, "email")
    await site(request).accounts.request_reset(email, base_url(request))
    # the same answer whether the account exists or not
    return render(request, "forgot.html", email=email, sent=True)


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
    secret = request.path_params["secret"]
    session = await visitor(request)
    if session is None:
        return redirect(request, f"/signup?invite={secret}")
    if request.method == "GET":
        return render(request, "invite.html", secret=secret)
    await form(request)
    try:
        ws = await workspaces.accept_invite(site(request).store, session.account, secret)
    except TallyError as exc:
        return render(request, "invite.html", exc.status, error=exc.message, secret=secret)
    return redirect(request, f"/w/{ws.slug}", f"You joined {ws.name}.")
