"""Workspaces, members, roles and tokens on the website, in-process on every backend:
every form and its failure paths, a member acting beyond their role, and another
workspace's objects by id (404 or 403, never a leak)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from conftest import BrowserFactory, Harness, HarnessFactory
from helpers import bearer
from site_client import SiteClient, capture_mail, mailed_links_soon, path_of, text

from tally import workspaces
from tally.accounts import Accounts
from tally.links import secret_hash
from tally.mail import Mailer
from tally.models import Permission, Role, Workspace
from tally.workspaces import ACTIONS

DOCS = Path(__file__).parent.parent / "docs" / "dashboard.md"
TOKEN_RE = re.compile(r'<code id="new-token">(tly_[A-Za-z0-9]{38})</code>')


async def verified(harness: Harness, make_browser: BrowserFactory, email: str) -> SiteClient:
    """A signed-in browser of a new account whose email is confirmed."""
    b = await make_browser(harness)
    r = await b.sign_up(email)
    assert r.status_code == 303, r.text
    account = await harness.store.find_account(email)
    assert account is not None
    await harness.store.mark_verified(account.id, 0.0)
    return b


async def member(
    harness: Harness, make_browser: BrowserFactory, email: str, slug: str, role: Role
) -> SiteClient:
    b = await verified(harness, make_browser, email)
    ws = await harness.store.get_workspace(slug)
    account = await harness.store.find_account(email)
    assert ws is not None
    assert account is not None
    await harness.store.add_member(ws.id, account.id, role, 0.0)
    return b


def test_the_roles_table_in_the_docs_is_the_code() -> None:
    """docs/dashboard.md's roles table says exactly what tally.workspaces.ACTIONS does."""
    rows = re.findall(r"^\| `(\w+)` \|([^|]*)\|([^|]*)\|([^|]*)\|", DOCS.read_text(), re.M)
    table = {}
    for action, *cells in rows:
        allowed = [role for role, cell in zip(Role, cells, strict=True) if "yes" in cell]
        table[action] = min(allowed)
    assert table == ACTIONS


async def test_create_rename_and_delete_a_workspace(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """Create (bad and taken slugs refused), rename, delete only with the typed slug; the
    deletion takes its counters and tokens."""
    b = await verified(harness, make_browser, "ann@example.com")
    bad = await b.submit("/workspaces/new", {"slug": "Bad Slug!", "name": ""})
    assert bad.status_code == 400
    assert "lowercase letters" in text(bad)
    taken = await b.submit("/workspaces/new", {"slug": "ann", "name": ""})
    assert taken.status_code == 409
    ok = await b.submit("/workspaces/new", {"slug": "shop", "name": "My shop"})
    assert ok.headers["location"] == "/w/shop"
    renamed = await b.submit("/w/shop/settings", {"name": "The shop"})
    assert renamed.status_code == 303
    ws = await harness.store.get_workspace("shop")
    assert ws is not None
    assert ws.name == "The shop"
    await harness.counter(ws, "hits")
    token = await harness.token(ws, Permission.WRITE)
    wrong = await b.submit("/w/shop/settings", {"confirm": "nope"}, action="/w/shop/delete")
    assert wrong.status_code == 400
    assert await harness.store.get_workspace("shop") is not None
    gone = await b.submit("/w/shop/settings", {"confirm": "shop"}, action="/w/shop/delete")
    assert gone.status_code == 303
    assert await harness.store.get_workspace("shop") is None
    r = await harness.get("/v2/shop/hits/up", token)
    assert r.status_code == 401


async def test_tokens_are_shown_once_listed_and_revoked(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """A token made on the page works on the API, is listed by prefix only, and stops
    working once revoked."""
    b = await verified(harness, make_browser, "ann@example.com")
    r = await b.submit("/w/ann/tokens", {"name": "site", "permission": "write", "expires": "30"})
    assert r.status_code == 303  # Post/Redirect/Get: a reload makes no second token
    assert r.headers["location"] == "/w/ann/tokens"
    assert "tly_" not in r.headers["location"]
    assert "tly_" not in r.text
    shown = await b.follow(r)
    secret = TOKEN_RE.search(shown.text)
    assert secret is not None
    token = secret.group(1)
    assert (await harness.get("/v2/ann/hits/up", token)).json()["data"]["up_count"] == 1
    listing = await b.get("/w/ann/tokens")
    assert token not in listing.text
    assert token[:12] in listing.text
    [t] = await harness.store.list_tokens((await harness.store.get_workspace("ann")).id)  # type: ignore[union-attr]
    assert t.expires_at is not None
    revoke = await b.post(f"/w/ann/tokens/{t.id}/revoke")
    assert revoke.status_code == 303
    assert harness.app.services is not None
    harness.app.services.verifier._cache.clear()  # skip the cache's TTL (1 s)
    assert (await harness.get("/v2/ann/hits/up", token)).status_code == 401


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "", "permission": "write", "expires": ""}, "Give the token a name"),
        ({"name": "x", "permission": "root", "expires": ""}, "Choose a permission"),
        ({"name": "x", "permission": "read", "expires": "5"}, "Choose when the token expires"),
    ],
)
async def test_token_form_errors(
    harness: Harness, make_browser: BrowserFactory, form: dict[str, str], message: str
) -> None:
    """Bad token forms say what is wrong and create nothing."""
    b = await verified(harness, make_browser, "ann@example.com")
    r = await b.submit("/w/ann/tokens", form)
    assert r.status_code == 400
    assert message in text(r)
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    assert await harness.store.list_tokens(ws.id) == []


async def test_an_unverified_account_cannot_create_tokens(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """Until the email is confirmed, the token form answers 403 and makes nothing."""
    b = await make_browser(harness)
    await b.sign_up("ann@example.com")
    r = await b.submit("/w/ann/tokens", {"name": "x", "permission": "read", "expires": ""})
    assert r.status_code == 403
    assert "Confirm your email address" in text(r)
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    assert await harness.store.list_tokens(ws.id) == []


async def test_an_invitation_confirms_no_address(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """Anyone who reads an invitation link (its inviter, on the members page) can sign up
    with it, but gets an unconfirmed account: no tokens, no invitations (before: it was
    confirmed, so an owner could mint a confirmed account with Admin tokens for any
    address); an unconfirmed account invites nobody (403, no invitation made)."""
    owner = await verified(harness, make_browser, "owner@example.com")
    r = await owner.follow(
        await owner.submit("/w/owner/members", {"email": "victim@example.com", "role": "owner"})
    )
    match = re.search(r"/invite/([A-Za-z0-9_-]+)</code>", r.text)
    assert match
    secret = match.group(1)
    squatter = await make_browser(harness)
    await squatter.get(f"/signup?invite={secret}")
    r = await squatter.post(
        "/signup", {"email": "victim@example.com", "password": "squatter pass 1", "invite": secret}
    )
    assert r.status_code == 303
    await squatter.log_in("victim@example.com", "squatter pass 1")
    account = await harness.store.find_account("victim@example.com")
    assert account is not None
    assert not account.verified
    tokens = await squatter.submit(
        "/w/owner/tokens", {"name": "x", "permission": "admin", "expires": ""}
    )
    assert tokens.status_code == 403
    invite = await squatter.submit(
        "/w/owner/members", {"email": "friend@example.com", "role": "viewer"}
    )
    assert invite.status_code == 403
    assert "Confirm your email address before you invite" in text(invite)
    ws = await harness.store.get_workspace("owner")
    assert ws is not None
    assert await harness.store.list_tokens(ws.id) == []
    assert await harness.store.list_invites(ws.id, 0.0) == []
    # an unconfirmed owner of a workspace of their own invites nobody either
    fresh = await make_browser(harness)
    await fresh.sign_up("fresh@example.com")
    page = await fresh.get("/w/fresh/members")
    assert 'id="invite-unconfirmed"' in page.text
    r = await fresh.submit("/w/fresh/members", {"email": "x@example.com", "role": "viewer"})
    assert r.status_code == 403
    fresh_ws = await harness.store.get_workspace("fresh")
    assert fresh_ws is not None
    assert await harness.store.list_invites(fresh_ws.id, 0.0) == []


async def test_removing_a_member_revokes_their_tokens_and_cancels_their_invitations(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """The tokens page says who made each token; removing a member cancels the
    invitations they sent and, with the box checked (the default), revokes the tokens
    they made there, which the API then refuses (before: both lived on)."""
    owner = await verified(harness, make_browser, "owner@example.com")
    ws = await harness.store.get_workspace("owner")
    assert ws is not None
    await harness.counter(ws, "hits")
    operator_token = await harness.token(ws, Permission.WRITE)
    co = await member(harness, make_browser, "co@example.com", "owner", Role.OWNER)
    ed = await member(harness, make_browser, "ed@example.com", "owner", Role.EDITOR)
    secrets = {}
    for who, browser in (("co", co), ("ed", ed), ("owner", owner)):
        r = await browser.follow(
            await browser.submit(
                "/w/owner/tokens", {"name": f"{who}'s", "permission": "write", "expires": ""}
            )
        )
        found = TOKEN_RE.search(r.text)
        assert found
        secrets[who] = found.group(1)
    await co.submit("/w/owner/members", {"email": "pal@example.com", "role": "viewer"})
    await owner.submit("/w/owner/members", {"email": "mate@example.com", "role": "viewer"})
    page = text(await owner.get("/w/owner/tokens"))
    for email in ("co@example.com", "ed@example.com", "owner@example.com", "operator or API"):
        assert email in page
    members = await owner.get("/w/owner/members")
    assert 'name="revoke_tokens" value="yes" checked' in members.text
    co_account = await harness.store.find_account("co@example.com")
    ed_account = await harness.store.find_account("ed@example.com")
    assert co_account is not None
    assert ed_account is not None
    r = await owner.post(
        f"/w/owner/members/{co_account.id}", {"action": "remove", "revoke_tokens": "yes"}
    )
    assert r.status_code == 303
    assert "1 token revoked and 1 invitation cancelled" in unquote(r.headers["set-cookie"])
    # unchecked: the member goes, their tokens stay
    await owner.get("/w/owner/members")
    r = await owner.post(f"/w/owner/members/{ed_account.id}", {"action": "remove"})
    assert r.status_code == 303
    by_name = {t.name: t for t in await harness.store.list_tokens(ws.id)}
    assert by_name["co's"].revoked_at is not None
    assert by_name["co's"].created_by == co_account.id
    assert by_name["ed's"].revoked_at is None
    assert by_name["owner's"].revoked_at is None
    assert [i.email for i in await harness.store.list_invites(ws.id, 0.0)] == ["mate@example.com"]
    await asyncio.sleep(harness.app.settings.token_cache_ttl)
    refused = await harness.get("/v2/owner/hits/up", secrets["co"])
    assert refused.status_code == 401
    for kept in (secrets["ed"], secrets["owner"], operator_token):
        assert (await harness.get("/v2/owner/hits/up", kept)).status_code == 200


async def test_members_beyond_their_role_are_refused(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """A viewer sees counters but cannot edit them or make tokens; an editor cannot make
    Admin tokens, manage members or delete the workspace (403 each, nothing changed)."""
    owner = await verified(harness, make_browser, "owner@example.com")
    ws = await harness.store.get_workspace("owner")
    assert ws is not None
    counter = await harness.counter(ws, "hits")
    viewer = await member(harness, make_browser, "viewer@example.com", "owner", Role.VIEWER)
    editor = await member(harness, make_browser, "editor@example.com", "owner", Role.EDITOR)
    assert (await viewer.get("/w/owner")).status_code == 200
    assert (await viewer.get(f"/w/owner/c/{counter.id}")).status_code == 200
    await viewer.get("/w/owner")
    for path, data in [
        ("/w/owner/counters/new", {"name": "x"}),
        (f"/w/owner/c/{counter.id}/reset", {}),
        (f"/w/owner/c/{counter.id}/delete", {"confirm": "hits"}),
        (f"/w/owner/c/{counter.id}/edit", {"description": "x"}),
        ("/w/owner/tokens", {"name": "x", "permission": "read", "expires": ""}),
        ("/w/owner/members", {"email": "x@example.com", "role": "owner"}),
        ("/w/owner/delete", {"confirm": "owner"}),
    ]:
        assert (await viewer.post(path, data)).status_code == 403, path
    assert (await viewer.get("/w/owner/tokens")).status_code == 403
    await editor.get("/w/owner/tokens")
    admin = await editor.post(
        "/w/owner/tokens", {"name": "x", "permission": "admin", "expires": ""}
    )
    assert admin.status_code == 403
    for path, data in [
        ("/w/owner/members", {"email": "x@example.com", "role": "owner"}),
        ("/w/owner/delete", {"confirm": "owner"}),
        ("/w/owner/settings", {"name": "mine now"}),
    ]:
        assert (await editor.post(path, data)).status_code == 403, path
    assert await harness.store.list_tokens(ws.id) == []
    assert (await harness.store.get_counter_by_id(counter.id)) is not None
    made = await editor.post("/w/owner/counters/new", {"name": "by-editor"})
    assert made.status_code == 303
    await owner.get("/w/owner")


async def test_another_workspaces_objects_are_not_found(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """Another workspace's pages, counters and tokens by id are 404, never shown or changed."""
    await verified(harness, make_browser, "ann@example.com")
    mallory = await verified(harness, make_browser, "mallory@example.com")
    ann_ws = await harness.store.get_workspace("ann")
    assert ann_ws is not None
    secret_counter = await harness.counter(ann_ws, "secret")
    await harness.token(ann_ws, Permission.ADMIN)
    [ann_token] = await harness.store.list_tokens(ann_ws.id)
    for path in ("/w/ann", "/w/ann/tokens", "/w/ann/members", f"/w/ann/c/{secret_counter.id}"):
        r = await mallory.get(path)
        assert r.status_code == 404, path
        assert "secret" not in r.text
    # her own workspace, their ids
    for path in (
        f"/w/mallory/c/{secret_counter.id}",
        f"/w/mallory/c/{secret_counter.id}/data.json",
    ):
        assert (await mallory.get(path)).status_code == 404, path
    await mallory.get("/w/mallory")
    for path, data in [
        (f"/w/mallory/c/{secret_counter.id}/delete", {"confirm": "secret"}),
        (f"/w/mallory/c/{secret_counter.id}/reset", {}),
        (f"/w/mallory/tokens/{ann_token.id}/revoke", {}),
        (f"/w/ann/tokens/{ann_token.id}/revoke", {}),
        ("/w/ann/delete", {"confirm": "ann"}),
    ]:
        assert (await mallory.post(path, data)).status_code == 404, path
    assert await harness.store.get_counter_by_id(secret_counter.id) is not None
    [still] = await harness.store.list_tokens(ann_ws.id)
    assert still.revoked_at is None
    assert await harness.store.get_workspace("ann") is not None


async def test_invite_accept_change_role_and_the_last_owner(
    make_harness: HarnessFactory, make_browser: BrowserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """With sign-up by invitation only, an invitation link lets its addressee sign up into
    the workspace with the invited role; the owner changes roles and removes members; the
    last owner can neither step down nor leave."""
    capture_mail(caplog)
    harness = await make_harness(signup="invite")
    assert harness.app.services is not None
    accounts = Accounts(harness.store, Mailer(harness.app.settings))
    await accounts.create_by_operator("owner@example.com", "owner password 1", True)
    owner = await make_browser(harness)
    assert (await owner.log_in("owner@example.com", "owner password 1")).status_code == 303
    bad = await owner.submit("/w/owner/members", {"email": "nope", "role": "editor"})
    assert bad.status_code == 400
    r = await owner.submit("/w/owner/members", {"email": "eve@example.com", "role": "editor"})
    assert r.status_code == 303
    [link] = await mailed_links_soon(caplog, "invite")
    assert link not in r.headers["location"]
    shown = await owner.follow(r)
    assert link in shown.text
    assert link not in (await owner.get("/w/owner/members")).text  # shown once
    eve = await make_browser(harness)
    landing = await eve.get(path_of(link))
    assert landing.status_code == 200  # who invited whom, where, as what; the form
    assert "owner@example.com invited eve@example.com to the workspace" in words(landing)
    assert "as editor" in words(landing)
    assert re.search(r'name="email"[^>]*value="eve@example.com" readonly', landing.text)
    wrong_email = await eve.post(
        "/signup",
        {
            "email": "someone@example.com",
            "password": "eve password 12",
            "invite": path_of(link).split("/")[-1],
        },
    )
    assert wrong_email.status_code == 400
    joined = await eve.post(
        "/signup",
        {
            "email": "eve@example.com",
            "password": "eve password 12",
            "invite": path_of(link).split("/")[-1],
        },
    )
    assert joined.status_code == 303
    assert (await eve.log_in("eve@example.com", "eve password 12")).status_code == 303
    assert (await eve.get("/")).headers["location"] == "/w/owner"
    ws = await harness.store.get_workspace("owner")
    eve_account = await harness.store.find_account("eve@example.com")
    owner_account = await harness.store.find_account("owner@example.com")
    assert ws is not None
    assert eve_account is not None
    assert owner_account is not None
    assert not eve_account.verified  # the inviter could read the link: it proves nothing
    assert await harness.store.member_role(ws.id, eve_account.id) is Role.EDITOR
    # the link is spent
    late = await make_browser(harness)
    await late.get("/signup")
    spent = await late.post(
        "/signup",
        {
            "email": "eve@example.com",
            "password": "eve password 12",
            "invite": path_of(link).split("/")[-1],
        },
    )
    assert spent.status_code == 400
    assert "invalid, used or expired" in text(spent)
    reopened = await late.get(path_of(link))
    assert reopened.status_code == 410
    assert "This invitation was already accepted" in words(reopened)
    assert 'name="password"' not in reopened.text
    await owner.get("/w/owner/members")
    step_down = await owner.post(
        f"/w/owner/members/{owner_account.id}", {"action": "role", "role": "editor"}
    )
    assert step_down.status_code == 303
    assert await harness.store.member_role(ws.id, owner_account.id) is Role.OWNER
    leave = await owner.post(f"/w/owner/members/{owner_account.id}", {"action": "remove"})
    assert leave.status_code == 303
    assert await harness.store.member_role(ws.id, owner_account.id) is Role.OWNER
    promote = await owner.post(
        f"/w/owner/members/{eve_account.id}", {"action": "role", "role": "viewer"}
    )
    assert promote.status_code == 303
    assert await harness.store.member_role(ws.id, eve_account.id) is Role.VIEWER
    remove = await owner.post(f"/w/owner/members/{eve_account.id}", {"action": "remove"})
    assert remove.status_code == 303
    assert await harness.store.member_role(ws.id, eve_account.id) is None
    assert (await eve.get("/w/owner")).status_code == 404


async def test_api_user_id_is_the_owners_account(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """The API's team_id is the workspace id and user_id its owner's account id."""
    await verified(harness, make_browser, "ann@example.com")
    ws = await harness.store.get_workspace("ann")
    account = await harness.store.find_account("ann@example.com")
    assert ws is not None
    assert account is not None
    await harness.counter(ws, "hits")
    data = (await harness.client.get("/v2/ann/hits", headers=bearer(None))).json()["data"]
    assert data["team_id"] == ws.id
    assert data["user_id"] == account.id


# What each action of the roles table does on the website, and what it answers when it
# is allowed (a refusal is 403 for a member, 404 for a non-member). {counter} is the id of
# the workspace's counter "hits".
ACTION_REQUESTS: dict[str, tuple[str, dict[str, str], int]] = {
    "view": ("/w/team", {}, 200),
    "edit_counters": ("/w/team/counters/new", {"name": "made", "visibility": "public"}, 303),
    "tokens": ("/w/team/tokens", {"name": "t", "permission": "write", "expires": ""}, 303),
    "admin_tokens": ("/w/team/tokens", {"name": "t", "permission": "admin", "expires": ""}, 303),
    "manage_members": ("/w/team/members", {"email": "new@example.com", "role": "viewer"}, 303),
    "manage_workspace": ("/w/team/settings", {"name": "Renamed"}, 303),
    "counter_rules": ("/w/team/c/{counter}/rules", {"floor": "0", "origins": ""}, 303),
    "export": ("/w/team/export", {}, 200),
    "alerts": ("/w/team/alerts", {"form": "webhook", "url": "https://example.com/h"}, 303),
    "share": ("/w/team/shares", {"kind": "secret", "name": "wall"}, 303),
}


@pytest.mark.parametrize("role", [None, *Role], ids=lambda r: r.label if r else "outsider")
@pytest.mark.parametrize("action", sorted(ACTIONS))
async def test_the_roles_table_on_the_website(
    harness: Harness, make_browser: BrowserFactory, action: str, role: Role | None
) -> None:
    """Every action of the roles table, by every role and by an outsider: allowed exactly
    where the table says; otherwise 403 (member) or 404 (outsider)."""
    accounts = Accounts(harness.store, Mailer(harness.app.settings))
    owner = await accounts.create_by_operator("owner@example.com", "owner password 1", True)
    await workspaces.create(harness.store, owner.account, "team", "Team")
    actor = await accounts.create_by_operator("actor@example.com", "actor password 1", True)
    ws = await harness.store.get_workspace("team")
    assert ws is not None
    counter = await harness.counter(ws, "hits")
    if role is not None:
        await harness.store.add_member(ws.id, actor.account.id, role, 0.0)
    b = await make_browser(harness)
    assert (await b.log_in("actor@example.com", "actor password 1")).status_code == 303
    path, data, ok = ACTION_REQUESTS[action]
    path = path.format(counter=counter.id)
    await b.get("/w/actor")  # a page of the actor's own, for the CSRF token
    r = await (b.get(path) if not data else b.post(path, data))
    if role is None:
        assert r.status_code == 404
    elif role >= ACTIONS[action]:
        assert r.status_code == ok, r.text
    else:
        assert r.status_code == 403


async def test_two_owners_leaving_at_once_leave_one(harness: Harness) -> None:
    """Both owners of a workspace leave at the same moment: one may, the other is told
    the last owner cannot leave; the same for both stepping down."""
    store = harness.store
    a = await store.create_account("a@example.com", "h", 0.0)
    b = await store.create_account("b@example.com", "h", 0.0)

    async def change(kind: str, ws: Workspace, who: int) -> None:
        if kind == "leaving":
            await workspaces.remove_member(store, ws, who)
        else:
            await workspaces.set_role(store, ws, who, Role.EDITOR)

    for slug in ("leaving", "stepping"):
        ws = await store.create_workspace(slug, slug)
        for who in (a, b):
            await store.add_member(ws.id, who.id, Role.OWNER, 0.0)
        done = await asyncio.gather(
            change(slug, ws, a.id), change(slug, ws, b.id), return_exceptions=True
        )
        refused = [r for r in done if isinstance(r, Exception)]
        assert len(refused) == 1, done
        assert "The last owner cannot" in str(refused[0])
        owners = [m for m in await store.list_members(ws.id) if m.role is Role.OWNER]
        assert len(owners) == 1


def words(r: httpx.Response) -> str:
    """The page's words without markup, as read."""
    return " ".join(re.sub(r"<[^>]+>", "", text(r)).split())


async def test_an_invitation_link_says_why_it_works_no_more(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """A cancelled, an expired and an unknown invitation link each say so, signed out and
    signed in (before: a plain sign-up form, or "invalid, used or expired"), with no form
    to fill; an open one shows its facts, and signed in as another address says so."""
    owner = await verified(harness, make_browser, "owner@example.com")
    ws = await harness.store.get_workspace("owner")
    assert ws is not None

    async def invite(email: str) -> str:
        r = await owner.follow(
            await owner.submit("/w/owner/members", {"email": email, "role": "viewer"})
        )
        match = re.search(r"/invite/([A-Za-z0-9_-]+)</code>", r.text)
        assert match
        return match.group(1)

    cancelled = await invite("cat@example.com")
    [pending] = await harness.store.list_invites(ws.id, time.time())
    await owner.get("/w/owner/members")
    assert (await owner.post(f"/w/owner/invites/{pending.id}/cancel")).status_code == 303
    expired = await invite("exp@example.com")
    await harness.store.create_one_time(
        "invite",
        secret_hash("an-old-link-0123456789"),
        time.time() - 8 * 86400,
        time.time() - 86400,
        workspace_id=ws.id,
        email="old@example.com",
        role=Role.VIEWER,
    )
    open_one = await invite("pal@example.com")
    stranger = await make_browser(harness)
    other = await verified(harness, make_browser, "other@example.com")
    for who in (stranger, other):
        gone = await who.get(f"/invite/{cancelled}")
        assert gone.status_code == 410
        assert "This invitation was cancelled" in words(gone)
        assert 'name="password"' not in gone.text
        assert "Accept the invitation" not in gone.text
        old = await who.get("/invite/an-old-link-0123456789")
        assert old.status_code == 410
        assert "This invitation expired on" in words(old)
        assert "Accept the invitation" not in old.text
        unknown = await who.get("/invite/no-such-link-0123456789")
        assert unknown.status_code == 404
        assert "This invitation link is not valid" in words(unknown)
        page = await who.get(f"/invite/{open_one}")
        assert page.status_code == 200
        said = "owner@example.com invited pal@example.com to the workspace"
        assert said in words(page)
    assert "but this invitation is for pal@example.com" in words(page)
    assert "Accept the invitation" not in page.text
    assert expired  # still open: only its twin was made old
