"""Workspaces as the dashboard manages them: members, roles, invitations, and the one
authorization check, `require_role`.

Who may do what (docs/dashboard.md has the same table; a test checks every row):

| action            | viewer | editor | owner |
|-------------------|--------|--------|-------|
| view              | yes    | yes    | yes   |
| edit_counters     |        | yes    | yes   |
| tokens            |        | yes    | yes   |
| admin_tokens      |        |        | yes   |
| manage_members    |        |        | yes   |
| manage_workspace  |        |        | yes   |
| counter_rules     |        |        | yes   |
| export            |        |        | yes   |

A non-member gets NotFound (a workspace's existence is not revealed), a member below
the action's role Forbidden.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from tally.counters import check_name
from tally.errors import BadRequest, Conflict, Forbidden, NotFound
from tally.links import new_secret, secret_hash
from tally.mail import Mail, Outbox
from tally.models import Account, Counter, Permission, Role, Workspace
from tally.storage.base import Store
from tally.throttle import INVITES_BY, MAIL_FROM, MAIL_TO, Windows, refusal

INVITE_TTL = 7 * 86400.0
MAX_DESCRIPTION = 500  # characters of a counter's description
MAX_TOKEN_NAME = 100
_REFUSED = {
    INVITES_BY.name: "You sent too many invitations lately.",
    MAIL_TO.name: "This address was sent too many emails lately.",
    MAIL_FROM.name: "Too many email requests from your network.",
}
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

ACTIONS: dict[str, Role] = {
    "view": Role.VIEWER,
    "edit_counters": Role.EDITOR,
    "tokens": Role.EDITOR,
    "admin_tokens": Role.OWNER,
    "manage_members": Role.OWNER,
    "manage_workspace": Role.OWNER,
    "counter_rules": Role.OWNER,  # bounds, allowed origins, unique window: an Admin token's
    "export": Role.OWNER,  # the whole workspace, as an Admin token downloads it
    "alerts": Role.OWNER,  # webhooks, alert rules, the delivery log: an Admin token's
    "share": Role.OWNER,  # read-only links to its pages, for people without an account
}


def require_role(role: Role | None, action: str) -> None:
    """The one authorization check: NotFound for a non-member, Forbidden below the
    action's role (see the table above)."""
    if role is None:
        raise NotFound("No such workspace, or you are not a member.")
    need = ACTIONS[action]
    if role < need:
        raise Forbidden(f"This needs the {need.label} role in this workspace.")


def token_action(permission: Permission) -> str:
    """The action creating or revoking a token of `permission` needs."""
    return "admin_tokens" if permission is Permission.ADMIN else "tokens"


def check_slug(slug: str) -> str:
    slug = slug.strip()
    if not _SLUG.fullmatch(slug):
        raise BadRequest(
            "The slug must be 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit."
        )
    return slug


def check_display_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise BadRequest("Enter a name.")
    if len(name) > 100:
        raise BadRequest("The name must be at most 100 characters long.")
    return name


def check_description(text: str) -> str:
    """A counter's description (stripped), or BadRequest."""
    text = text.strip()
    if len(text) > MAX_DESCRIPTION:
        raise BadRequest(f"The description must be at most {MAX_DESCRIPTION} characters long.")
    return text


def check_token_name(name: str, *, required: bool = True) -> str:
    """A token's name (inner spaces collapsed), or BadRequest."""
    name = " ".join(name.split())
    if (required and not name) or len(name) > MAX_TOKEN_NAME:
        raise BadRequest(f"Give the token a name (up to {MAX_TOKEN_NAME} characters).")
    return name


MAX_QUOTA = 10**12


def check_counter_quota(quota: int | None, server: int) -> int | None:
    """A workspace's own counter quota: 1 up to the server's (TALLY_COUNTER_QUOTA, a
    ceiling its members cannot raise; any, if the server has none), or None for the
    server's."""
    if quota is None:
        return None
    top = server or MAX_QUOTA
    if not 1 <= quota <= top:
        raise BadRequest(f"the counter quota must be a whole number from 1 to {top}")
    return quota


async def create_counter(
    store: Store, workspace_id: int, name: str, description: str, private: bool
) -> Counter:
    """A new counter of the workspace; BadRequest for a bad name or description, Conflict
    if the workspace has a counter of that name."""
    check_name("counter", name)
    description = check_description(description)
    return await store.create_counter(workspace_id, name, private=private, description=description)


async def create(store: Store, owner: Account, slug: str, name: str) -> Workspace:
    slug = check_slug(slug)
    name = check_display_name(name or slug)
    try:
        ws = await store.create_workspace(slug, name)
    except Conflict:
        raise Conflict(f"The slug {slug!r} is taken. Choose another.") from None
    await store.add_member(ws.id, owner.id, Role.OWNER, time.time())
    return ws


async def create_personal(store: Store, owner: Account) -> Workspace:
    """The workspace every account gets at sign-up, named after the email's local part."""
    base = re.sub(r"[^a-z0-9_-]+", "-", owner.email.split("@", 1)[0].lower()).strip("-_")
    base = (base or "me")[:48]
    for attempt in range(20):
        slug = base if attempt == 0 else f"{base}-{new_secret()[:4].lower()}"
        try:
            return await create(store, owner, slug, f"{owner.email.split('@', 1)[0]}'s workspace")
        except Conflict:
            continue
    raise Conflict("Could not find a free workspace name; try again.")


BOOTSTRAP = "default"  # the workspace `tally serve` makes on a new database


async def adopt_bootstrap(store: Store, account: Account) -> None:
    """The first account on the instance owns the bootstrap workspace `default`."""
    await store.claim_bootstrap(BOOTSTRAP, account.id, time.time())


async def membership(store: Store, account: Account, slug: str) -> tuple[Workspace, Role]:
    """The workspace and the account's role in it; NotFound if it is not a member."""
    ws = await store.get_workspace(slug)
    role = await store.member_role(ws.id, account.id) if ws is not None else None
    if ws is None or role is None:
        raise NotFound("No such workspace, or you are not a member.")
    return ws, role


async def invite(
    store: Store,
    outbox: Outbox,
    windows: Windows,
    inviter: Account,
    client: str,
    ws: Workspace,
    email: str,
    role: Role,
    base_url: str,
) -> str:
    """Create an invitation; its link (shown to the inviter, and mailed off the request).
    Only a confirmed account invites (else anyone could have a throwaway account send
    mail in Tally's name); the invitation records its inviter. RateLimited, with nothing
    made or sent, past the invitations of the inviter (INVITES_BY), the emails to the
    address (MAIL_TO) or the emailing requests of the client (MAIL_FROM)."""
    if not inviter.verified:
        raise Forbidden("Confirm your email address before you invite anyone.")
    now = time.time()
    ticket = await windows.take(
        [(INVITES_BY, str(inviter.id)), (MAIL_TO, email.lower()), (MAIL_FROM, client)], now
    )
    if ticket.refused is not None:
        raise refusal(ticket, _REFUSED[ticket.refused.name])
    secret = new_secret()
    await store.create_one_time(
        "invite",
        secret_hash(secret),
        now,
        now + INVITE_TTL,
        workspace_id=ws.id,
        email=email,
        role=role,
        created_by=inviter.id,
    )
    link = f"{base_url}/invite/{secret}"
    outbox.send(
        Mail(
            email,
            f"You are invited to the Tally workspace {ws.name}",
            f"You are invited to join the workspace {ws.name} ({ws.slug}) as {role.label}:\n\n"
            f"{link}\n\nThe link works once, for 7 days.",
        )
    )
    return link


@dataclass(frozen=True, slots=True)
class Invitation:
    """What an invitation link says, shown before it is accepted: who invited whom, to
    which workspace, in which role; or why it works no more."""

    state: str  # "open", "accepted", "cancelled", "expired" or "unknown"
    email: str = ""
    role: Role | None = None
    workspace: Workspace | None = None
    inviter: str = ""  # the inviter's email ("" if that account is gone)
    expires_at: float = 0.0
    used_at: float | None = None


async def read_invitation(store: Store, secret: str, now: float) -> Invitation:
    """The invitation of a link, whatever its state. Accepted and cancelled both spend
    a link; an accepted one records the account that accepted it, a cancelled one none."""
    link = await store.find_one_time("invite", secret_hash(secret))
    if link is None or link.workspace_id is None or link.role is None:
        return Invitation("unknown")
    ws = await store.get_workspace_by_id(link.workspace_id)
    if ws is None:
        return Invitation("unknown")
    inviter = None if link.created_by is None else await store.get_account(link.created_by)
    if link.used_at is not None:
        state = "cancelled" if link.account_id is None else "accepted"
    elif link.expires_at <= now:
        state = "expired"
    else:
        state = "open"
    return Invitation(
        state,
        link.email,
        link.role,
        ws,
        "" if inviter is None else inviter.email,
        link.expires_at,
        link.used_at,
    )


async def accept_invite(store: Store, account: Account, secret: str) -> Workspace:
    """Join the invitation's workspace with its role (the invitation is then spent)."""
    now = time.time()
    link = await store.peek_one_time("invite", secret_hash(secret), now)
    if link is None or link.workspace_id is None or link.role is None:
        raise BadRequest("This invitation link is invalid, used or expired.")
    if link.email.lower() != account.email.lower():
        raise Forbidden(f"This invitation is for {link.email}; you are signed in as another.")
    if await store.use_one_time("invite", secret_hash(secret), now, account_id=account.id) is None:
        raise BadRequest("This invitation link is invalid, used or expired.")
    ws = await store.get_workspace_by_id(link.workspace_id)
    if ws is None:
        raise BadRequest("The workspace of this invitation no longer exists.")
    if await store.member_role(ws.id, account.id) is None:
        await store.add_member(ws.id, account.id, link.role, now)
    return ws


async def set_role(store: Store, ws: Workspace, account_id: int, role: Role) -> None:
    if not await store.set_member_role(ws.id, account_id, role):
        if await store.member_role(ws.id, account_id) is None:
            raise NotFound("No such member.")
        raise BadRequest("The last owner cannot step down. Make someone else owner first.")


async def remove_member(
    store: Store, ws: Workspace, account_id: int, *, revoke_tokens: bool = True
) -> tuple[int, int]:
    """Remove the member (never the last owner: one transaction), cancel the invitations
    they sent and (unless told otherwise) revoke the tokens they made in the workspace:
    (tokens revoked, invitations cancelled). Removed first, so a removal refused keeps
    everything."""
    if not await store.remove_member(ws.id, account_id):
        if await store.member_role(ws.id, account_id) is None:
            raise NotFound("No such member.")
        raise BadRequest("The last owner cannot leave. Make someone else owner first.")
    return await store.drop_grants(ws.id, account_id, time.time(), revoke_tokens=revoke_tokens)


async def delete(store: Store, ws: Workspace, confirmation: str) -> None:
    if confirmation.strip() != ws.slug:
        raise BadRequest(f"Type the workspace's slug, {ws.slug}, to confirm.")
    await store.delete_workspace(ws.id)
