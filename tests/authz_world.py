"""The world of the authorization matrix (tests/test_authz_matrix.py): one app, the
workspaces "ws" and "other", a public and a private counter, a token and a session for
every kind of caller, and how to send any route's request as any caller."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conftest import Harness
from sse import OpenStream

from tally.accounts import Accounts
from tally.auth import generate_token, issue_token
from tally.mail import Mailer
from tally.models import CounterChange, Permission, Role, Workspace
from tally.site.pages import derive_key
from tally.site.security import CSRF_COOKIE, SESSION_COOKIE, csrf_token
from tally.storage.base import Store
from tally.throttle import LocalWindows, LoginThrottle
from tally.web import api, download, manage, pageview, v1
from tally.web.app import load_secret_key

# Who asks. Token callers send `Authorization`, session callers the session cookie.
CALLERS = (
    "none",  # no token, no session
    "bad",  # a malformed Authorization header
    "unknown",  # a well-formed token no one issued
    "expired",  # an Admin token of "ws" past its expiry
    "revoked",  # an Admin token of "ws", revoked
    "read",  # tokens of "ws"
    "write",
    "admin",
    "o_admin",  # an Admin token of "other"
    "owner",  # sessions of members of "ws"
    "editor",
    "viewer",
    "o_owner",  # the session of the owner of "other" (not a member of "ws")
    "out",  # the cookie of a session that signed out
)
TOKEN_CALLERS = ("read", "write", "admin", "o_admin", "expired", "revoked")
SESSION_CALLERS = ("owner", "editor", "viewer", "o_owner")
KINDS = ("public", "private", "missing")
NAMES = {"public": "pub", "private": "priv", "missing": "nope"}
MISSING_ID = 999_999_999
PASSWORD = "a long passphrase 42"


def app_routes(app_routes_table: Mapping[bytes, object]) -> set[tuple[str, str]]:
    """Every (method, route template) the app serves, from the app's own tables: the V2
    API, the management API, the V1 API, exports, the app's fixed routes and the
    website's Starlette routes. A route added to any of them appears here."""
    from starlette.routing import Mount, Route

    from tally.site.app import ROUTES

    routes = {("GET", t) for t in api.TEMPLATES.values()}
    routes |= {("GET", t) for t in v1.TEMPLATES.values()}
    routes.add(("GET", download.EXPORT_ROUTE))
    for key, methods in manage.METHODS.items():
        routes |= {(m, manage.TEMPLATES[key]) for m in methods}
    routes |= {("GET", path.decode()) for path in app_routes_table}
    routes |= {(m, pageview.COUNT.decode()) for m in ("GET", "POST")}
    routes.add(("GET", pageview.PIXEL.decode()))
    for route in ROUTES:
        if isinstance(route, Route):
            routes |= {(m, route.path) for m in route.methods or () if m != "HEAD"}
        elif isinstance(route, Mount):
            routes.add(("GET", route.path + "/{path}"))
    return routes


@dataclass
class World:
    h: Harness
    ws: Workspace
    other: Workspace
    accounts: Accounts
    tokens: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    account_ids: dict[str, int] = field(default_factory=dict)
    victim_token: int = 0
    # requests of a live session sent to sign-in: a 303 cell must not pass that way
    not_signed_in: list[str] = field(default_factory=list)
    out_session: str = ""
    csrf_cookie: str = ""
    csrf_key: bytes = b""  # a caller's form token: csrf_token(csrf_key, cookie, its session)

    @property
    def store(self) -> Store:
        return self.h.store

    async def counter_id(self, kind: str) -> int:
        if kind == "missing":
            return MISSING_ID
        counter = await self.store.read_counter("ws", NAMES[kind])
        assert counter is not None
        return counter.id

    async def path(self, template: str, kind: str) -> str:
        """The concrete path of a route template for a counter of `kind`."""
        values = {
            "{workspace}": "ws",
            "{slug}": "ws",
            "{namespace}": "ws",
            "{name}": NAMES[kind],
            "{token_id}": str(self.victim_token),
            "{account_id}": str(self.account_ids["viewer"]),
            "{invite_id}": str(MISSING_ID),
            "{webhook_id}": str(MISSING_ID),
            "{alert_id}": str(MISSING_ID),
            "{rule_id}": str(MISSING_ID),
            "{delivery_id}": str(MISSING_ID),
            "{share_id}": str(MISSING_ID),
            "{secret}": secrets.token_urlsafe(32),
            "{path}": "site.css",
        }
        if "{counter_id}" in template:
            values["{counter_id}"] = str(await self.counter_id(kind))
        for placeholder, value in values.items():
            template = template.replace(placeholder, value)
        return template

    def headers(self, caller: str) -> dict[str, str]:
        headers: dict[str, str] = {}
        cookies = {CSRF_COOKIE: self.csrf_cookie}
        if caller == "bad":
            headers["Authorization"] = "Bearer abc"
        elif caller == "unknown":
            headers["Authorization"] = f"Bearer {generate_token()}"
        elif caller in self.tokens:
            headers["Authorization"] = f"Bearer {self.tokens[caller]}"
        elif caller in self.sessions:
            cookies[SESSION_COOKIE] = self.sessions[caller]
        elif caller == "out":
            cookies[SESSION_COOKIE] = self.out_session
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        return headers

    async def send(self, method: str, template: str, kind: str, caller: str, query: str) -> int:
        """`caller` sends the request of a route for a counter of `kind`; its status.
        Bodies are empty forms (with the CSRF token) or `{}`: what an authorized caller
        gets is the validation's 400, so the cell shows the authorization decision."""
        path = await self.path(template, kind) + query
        headers = self.headers(caller)
        if template.endswith("/stream"):
            return await self.stream_status(path, headers)
        client = self.h.client
        if template.startswith("/v2/") and method in ("POST", "PATCH"):
            r = await client.request(method, path, headers=headers, content=b"{}")
        elif method == "POST":
            session = self.sessions.get(caller, self.out_session if caller == "out" else "")
            token = csrf_token(self.csrf_key, self.csrf_cookie, session)
            r = await client.post(path, headers=headers, data={"csrf_token": token})
        else:
            r = await client.request(method, path, headers=headers)
        if caller in SESSION_CALLERS and r.headers.get("location", "").startswith("/login?"):
            self.not_signed_in.append(f"{method} {template}{query} [{kind}] {caller}")
        return r.status_code

    async def stream_status(self, path: str, headers: dict[str, str]) -> int:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        stream = await OpenStream(self.h.app, path, raw).open()
        stream.drop()
        await stream.closed()
        return stream.status

    async def repair(self) -> None:
        """Undo what an allowed request changed: the two counters exist with their
        visibility, the missing one is missing, "ws" is open for V1 with no origin rule, the
        victim token is live, every session is valid, no sign-in throttle or mail limit."""
        missing = await self.store.read_counter("ws", NAMES["missing"])
        if missing is not None:  # made by an allowed up: gone again, as the API deletes
            await self.store.delete_counter(missing.id)
            services = self.h.app.services
            assert services is not None
            services.counters.cache.forget(("ws", NAMES["missing"]))
        for kind, private in (("public", False), ("private", True)):
            counter = await self.store.read_counter("ws", NAMES[kind])
            if counter is not None and counter.private != private:
                await self.store.change_counter(counter.id, CounterChange(private=private))
            elif counter is None:
                await self.store.create_counter(self.ws.id, NAMES[kind], private=private)
        ws = await self.store.get_workspace_by_id(self.ws.id)
        assert ws is not None
        if not ws.v1_open or ws.origins:  # an owner's empty rules form closes V1
            await self.store.set_workspace_rules(ws.id, v1_open=True, origins=())
        tokens = await self.store.list_tokens(self.ws.id)
        if any(t.id == self.victim_token and t.revoked_at for t in tokens):
            await self.new_victim()
        for caller in SESSION_CALLERS:
            account = await self.store.get_account(self.account_ids[caller])
            assert account is not None
            if await self.accounts.session(self.sessions[caller]) is None:
                self.sessions[caller] = await self.accounts.start_session(account)
        await self.public_shares()
        self.accounts.windows = LocalWindows()  # no sign-in throttle, no mail limit
        self.accounts.throttle = LoginThrottle(self.accounts.windows)

    async def public_shares(self) -> None:
        """ "ws" shares its overview and its public counter publicly (the shared pages'
        rows), again if a request revoked them or the counter was made anew."""
        public = await self.store.read_counter("ws", NAMES["public"])
        assert public is not None
        for counter_id in (None, public.id):
            share = await self.store.find_public_share("ws", counter_id)
            if share is None or not share.usable(time.time()):
                await self.store.create_share(
                    self.ws.id,
                    counter_id,
                    public=True,
                    secret_hash=None,
                    prefix="",
                    name="",
                    include_private=(),
                    created_by=None,
                    now=time.time(),
                    expires_at=None,
                )

    async def new_victim(self) -> None:
        key = await load_secret_key(self.store, self.h.app.settings)
        issued = await issue_token(self.store, key, self.ws.id, Permission.WRITE, "victim")
        self.victim_token = issued.token.id


def site_accounts(h: Harness) -> Accounts:
    services = h.app.services
    assert services is not None
    starlette: Any = services.site
    while not hasattr(starlette, "state"):  # through the website's middleware
        starlette = starlette.app
    accounts: Accounts = starlette.state.site.accounts
    return accounts


async def make_world(h: Harness) -> World:
    store = h.store
    ws, other = await h.workspace("ws"), await h.workspace("other")
    ws = await store.set_workspace_rules(ws.id, v1_open=True, origins=()) or ws
    accounts = site_accounts(h)
    world = World(h, ws, other, accounts)
    key = await load_secret_key(store, h.app.settings)
    for caller in ("read", "write", "admin", "o_admin", "expired", "revoked"):
        workspace = other if caller == "o_admin" else ws
        permission = Permission.parse(caller) if caller in ("read", "write") else Permission.ADMIN
        expires = time.time() - 60 if caller == "expired" else None
        issued = await issue_token(store, key, workspace.id, permission, caller, expires)
        world.tokens[caller] = issued.secret
        if caller == "revoked":
            await store.revoke_token(issued.token.id)
    await world.new_victim()
    mailer = Mailer(h.app.settings)
    operator = Accounts(store, mailer)
    roles = {"owner": Role.OWNER, "editor": Role.EDITOR, "viewer": Role.VIEWER}
    for caller in (*SESSION_CALLERS, "out"):
        made = await operator.create_by_operator(f"{caller}@example.com", PASSWORD, True)
        account = made.account
        world.account_ids[caller] = account.id
        if caller in roles:
            await store.add_member(ws.id, account.id, roles[caller], time.time())
        elif caller == "o_owner":
            await store.add_member(other.id, account.id, Role.OWNER, time.time())
        else:  # "out": an owner of "ws" whose session ended
            await store.add_member(ws.id, account.id, Role.OWNER, time.time())
            world.out_session = await accounts.start_session(account)
            await accounts.log_out(world.out_session)
        if caller != "out":
            world.sessions[caller] = await accounts.start_session(account)
    for kind in ("public", "private"):
        await h.counter(ws, NAMES[kind], private=kind == "private")
    await world.public_shares()
    world.csrf_cookie = secrets.token_urlsafe(32)
    world.csrf_key = derive_key(key, b"csrf")
    return world
