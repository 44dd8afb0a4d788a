"""The management API, for Admin tokens: a workspace's counters and tokens.

    GET    /v2/{workspace}/-/counters[?q=&limit=&after=]    list, filtered by name, paged
                                                            (or &offset=, slow when deep)
    POST   /v2/{workspace}/-/counters                       create {name, description, visibility}
    GET    /v2/{workspace}/-/counters/{id}                  one counter
    PATCH  /v2/{workspace}/-/counters/{id}                  change {description, visibility,
                                                            allowed_origins, floor, ceiling,
                                                            unique, unique_by}
    DELETE /v2/{workspace}/-/counters/{id}                  delete it and its history
    GET    /v2/{workspace}/-/tokens                         list
    POST   /v2/{workspace}/-/tokens                         create {permission, name,
                                                            expires_in_days}
    DELETE /v2/{workspace}/-/tokens/{id}                    revoke
    GET    /v2/{workspace}/-/settings                       the workspace's settings
    PATCH  /v2/{workspace}/-/settings                       change {allowed_origins, v1_open,
                                                            counter_quota, timezone,
                                                            page_views, honour_dnt}
    GET    /v2/{workspace}/-/shares                         list the shared dashboards
    POST   /v2/{workspace}/-/shares                         share {counter_id, public, name,
                                                            expires_in_days, include_private}
    DELETE /v2/{workspace}/-/shares/{id}                    revoke
    .../-/webhooks, .../-/alerts, .../-/deliveries          alerts (tally.web.manage_alerts)

Why `/-/`: a counter name may be anything without '/' (tally.counters.check_name), so no
second segment can be reserved. A V2 route has two segments, or three whose last is an
action (tally.web.api.ACTIONS); `/{workspace}/-/counters` has three whose last is no
action, `/{workspace}/-/counters/{id}` four, so neither is, nor ever shadows, a V2 route
(a counter named "-" keeps `/v2/{workspace}/-` and its actions). A future V2 action must
not be called `counters`, `tokens`, `settings`, `webhooks`, `alerts`, `deliveries` or
`shares`.

Every request needs an Admin token of the workspace: none is a 401, a Read or Write one
a 403, a token of another workspace the 404 of a missing workspace (nothing about it is
revealed). Counters and tokens are named by id; another workspace's id is a 404 too.
The checks are the dashboard's and the CLI's (tally.rules, tally.workspaces); requests
count against the V2 rate limit; errors are in the V2 shape; a 400, or the 409 of a new
bound the counter's value already breaks, changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson

from tally import periods, rules, shares, workspaces
from tally.auth import TokenVerifier, issue_token
from tally.counters import MAX_NAME, Counters
from tally.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    TallyError,
    Unauthorized,
)
from tally.models import Counter, CounterChange, Permission, Share, Token, Workspace
from tally.namespaces import Namespaces
from tally.numbers import row_id
from tally.storage.base import Store
from tally.web.api import V2Api, query_number, rfc3339
from tally.web.gate import name_segment
from tally.web.http import (
    Headers,
    Receive,
    Scope,
    Send,
    error_body,
    response_start,
    send_json,
)
from tally.web.manage_alerts import ManageAlerts

MAX_BODY = 16 * 1024  # bytes of a JSON body
MAX_LIMIT = 200  # counters per page
DEFAULT_LIMIT = 50
MAX_OFFSET = 10**9
MAX_EXPIRY_DAYS = 3650

# (kind, item?) -> route template, the `route` label of the request metrics
TEMPLATES = {
    (b"counters", False): "/v2/{workspace}/-/counters",
    (b"counters", True): "/v2/{workspace}/-/counters/{counter_id}",
    (b"tokens", False): "/v2/{workspace}/-/tokens",
    (b"tokens", True): "/v2/{workspace}/-/tokens/{token_id}",
    (b"settings", False): "/v2/{workspace}/-/settings",
    (b"webhooks", False): "/v2/{workspace}/-/webhooks",
    (b"webhooks", True): "/v2/{workspace}/-/webhooks/{webhook_id}",
    (b"alerts", False): "/v2/{workspace}/-/alerts",
    (b"alerts", True): "/v2/{workspace}/-/alerts/{alert_id}",
    (b"deliveries", False): "/v2/{workspace}/-/deliveries",
    (b"deliveries", True): "/v2/{workspace}/-/deliveries/{delivery_id}",
    (b"shares", False): "/v2/{workspace}/-/shares",
    (b"shares", True): "/v2/{workspace}/-/shares/{share_id}",
}
METHODS = {
    (b"counters", False): ("GET", "POST"),
    (b"counters", True): ("GET", "PATCH", "DELETE"),
    (b"tokens", False): ("GET", "POST"),
    (b"tokens", True): ("DELETE",),
    (b"settings", False): ("GET", "PATCH"),
    (b"webhooks", False): ("GET", "POST"),
    (b"webhooks", True): ("GET", "PATCH", "DELETE"),
    (b"alerts", False): ("GET", "POST"),
    (b"alerts", True): ("GET", "DELETE"),
    (b"deliveries", False): ("GET",),
    (b"deliveries", True): ("GET", "POST"),
    (b"shares", False): ("GET", "POST"),
    (b"shares", True): ("DELETE",),
}
VISIBILITY = {"public": False, "private": True}
RULE_FIELDS = frozenset(("allowed_origins", "floor", "ceiling"))
COUNTER_FIELDS = frozenset(("description", "visibility", "unique", "unique_by")) | RULE_FIELDS
SHARE_FIELDS = frozenset(("counter_id", "public", "name", "expires_in_days", "include_private"))
SETTINGS_FIELDS = frozenset(
    ("allowed_origins", "v1_open", "counter_quota", "page_views", "honour_dnt", "timezone")
)


@dataclass(frozen=True, slots=True)
class Route:
    kind: bytes  # b"counters", b"tokens" or b"settings"
    workspace: bytes  # as in the path (decoded later)
    item: bytes | None  # the id segment, if any

    @property
    def template(self) -> str:
        return TEMPLATES[self.kind, self.item is not None]


def match(path: bytes) -> Route | None:
    """The management route of a /v2/ path, or None if it is not one (then it is V2's)."""
    parts = path[4:].split(b"/")
    if len(parts) > 3 and parts[-1] == b"":
        parts.pop()
    if len(parts) not in (3, 4) or parts[1] != b"-":
        return None
    route = Route(parts[2], parts[0], parts[3] if len(parts) == 4 else None)
    return route if (route.kind, route.item is not None) in TEMPLATES else None


def counter_data(c: Counter) -> dict[str, Any]:
    """A counter as the management API shows it (its committed totals)."""
    return {
        "id": c.id,
        "name": c.name,
        "description": c.description,
        "visibility": "private" if c.private else "public",
        "private": c.private,
        "workspace_id": c.workspace_id,
        "workspace_slug": c.workspace_slug,
        "up_count": c.up_count,
        "down_count": c.down_count,
        "value": c.up_count - c.down_count,
        "floor": c.floor,
        "ceiling": c.ceiling,
        "allowed_origins": list(c.origins),
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.updated_at),
        "unique": c.unique_window or None,
        "unique_by": rules.unique_by(c.unique_by_address),
    }


def unique_field(data: dict[str, Any]) -> int | None:
    """`unique` as a window in seconds (0: off); None if absent (tally.rules.check_unique)."""
    return rules.check_unique(data["unique"]) if "unique" in data else None


def settings_data(ws: Workspace, usage: tuple[int, int | None], server: int) -> dict[str, Any]:
    """A workspace's settings as the management API shows them; `usage`: its counters
    and own quota (Store.counter_usage), `server`: TALLY_COUNTER_QUOTA."""
    counters, own = usage
    return {
        "id": ws.id,
        "slug": ws.slug,
        "name": ws.name,
        "v1_open": ws.v1_open,
        "allowed_origins": list(ws.origins),
        "page_views": ws.page_views,
        "honour_dnt": ws.honour_dnt,
        "created_at": rfc3339(ws.created_at),
        "counters": counters,
        "counter_quota": server if own is None else own,
        "counter_quota_own": own is not None,
        "timezone": ws.timezone or None,
    }


def quota_field(body: dict[str, Any], server: int) -> int | None:
    """The workspace's own counter quota of a settings body (workspaces.check_counter_quota),
    or null for the server's."""
    value = body["counter_quota"]
    if value is None:
        return workspaces.check_counter_quota(None, server)
    whole = rules.json_int(value)  # 284 or 284.0, as JSON Schema counts whole numbers
    if whole is None:
        raise BadRequest("counter_quota must be a whole number, or null")
    return workspaces.check_counter_quota(whole, server)


def _time(ts: float | None) -> str | None:
    return None if ts is None else rfc3339(ts)


def token_data(t: Token) -> dict[str, Any]:
    """A token as lists show it: never its secret."""
    return {
        "id": t.id,
        "name": t.name,
        "prefix": t.prefix,
        "permission": t.permission.label,
        "created_at": rfc3339(t.created_at),
        "expires_at": _time(t.expires_at),
        "last_used_at": _time(t.last_used_at),
        "revoked_at": _time(t.revoked_at),
    }


async def read_body(receive: Receive) -> bytes:
    """The request body, at most MAX_BODY bytes (BadRequest beyond)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise BadRequest("the request ended before its body")
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > MAX_BODY:
            raise BadRequest(f"the body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse_object(body: bytes, allowed: frozenset[str]) -> dict[str, Any]:
    """A JSON object whose keys are all in `allowed`, or BadRequest."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}: use {', '.join(sorted(allowed))}")
    return data


def string_field(data: dict[str, Any], key: str, default: str | None = None) -> str | None:
    """The string `key` (`default` if absent); BadRequest if it is anything else, null
    included."""
    if key not in data:
        return default
    value = data[key]
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value


def visibility_field(data: dict[str, Any]) -> bool | None:
    """`visibility` ("public" or "private") as `private`; None if absent."""
    if "visibility" not in data:
        return None
    value = data["visibility"]
    if not isinstance(value, str) or value not in VISIBILITY:
        raise BadRequest('visibility must be "public" or "private"')
    return VISIBILITY[value]


def origins_field(data: dict[str, Any]) -> tuple[str, ...] | None:
    """`allowed_origins` (a list of origins, [] for any) normalized; None if absent."""
    if "allowed_origins" not in data:
        return None
    value = data["allowed_origins"]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest("allowed_origins must be a list of origins (strings)")
    return rules.check_origins(value)


def bound_field(data: dict[str, Any], key: str, current: int | None) -> int | None:
    """The bound `key` (a whole number, or null for none); `current` if absent."""
    if key not in data:
        return current
    value = data[key]
    if value is None:
        return None
    bound = rules.json_int(value)
    if bound is None or abs(bound) > rules.MAX_BOUND:
        raise BadRequest(f"{key} must be a whole number from -2^62 to 2^62, or null")
    return bound


def query_text(query: bytes, name: str, maximum: int) -> str:
    """The text parameter `name` ("" if absent), at most `maximum` characters."""
    try:
        values = parse_qs(query.decode("utf-8"), keep_blank_values=True).get(name, [""])
    except UnicodeDecodeError:
        raise BadRequest("the query string is not valid UTF-8") from None
    if len(values) > 1:
        raise BadRequest(f"{name} is given more than once")
    if len(values[0]) > maximum:
        raise BadRequest(f"{name} is longer than {maximum} characters")
    return values[0]


class ManageApi:
    def __init__(
        self, store: Store, namespaces: Namespaces, verifier: TokenVerifier, api: V2Api
    ) -> None:
        self.store = store
        self.namespaces = namespaces  # its workspace cache and the counter cache
        self.counters: Counters = namespaces.counters
        self.verifier = verifier
        self.api = api  # its rate limit and client IP rules
        self.alerts: ManageAlerts | None = None  # set by the app (tally.web.manage_alerts)
        self.public_url: str | None = None  # TALLY_PUBLIC_URL: where share links point

    async def __call__(self, scope: Scope, receive: Receive, send: Send, route: Route) -> str:
        """Answer the request; its route template."""
        template = route.template
        limits: Headers | None = None
        try:
            method = scope["method"]
            allowed = METHODS[route.kind, route.item is not None]
            if method == "OPTIONS":
                await send_preflight(send, allowed)
                return template
            if method not in allowed:
                raise MethodNotAllowed(f"{method} is not allowed here: use {', '.join(allowed)}")
            workspace = name_segment("workspace", route.workspace)
            key = (route.kind, workspace, template)

            token, limits = await self.api.gate.admit(scope, key, time.monotonic())
            if token is None:
                raise Unauthorized("the management API needs an Admin token of the workspace")
            if token.workspace_slug != workspace:
                raise NotFound("no such workspace")
            if token.permission < Permission.ADMIN:
                raise Forbidden("the management API needs an Admin token of the workspace")

            query: bytes = scope.get("query_string", b"")
            if route.kind == b"counters":
                status, message, data = await self.counters_route(
                    method, token, route.item, query, receive
                )
            elif route.kind == b"tokens":
                status, message, data = await self.tokens_route(method, token, route.item, receive)
            elif route.kind in (b"webhooks", b"alerts", b"deliveries"):
                status, message, data = await self.alerts_routes(
                    route, method, token, query, receive
                )
            elif route.kind == b"shares":
                status, message, data = await self.shares_route(
                    method, token, route.item, receive, self.public_url or _origin(scope)
                )
            else:
                status, message, data = await self.settings_route(method, token, receive)
            body = {"code": str(status), "message": message, "data": data}
            await send_json(send, status, body, limits)
        except TallyError as exc:
            headers = list(exc.headers or limits or ())
            if isinstance(exc, MethodNotAllowed):
                allowed = METHODS[route.kind, route.item is not None]
                headers.append((b"allow", ", ".join((*allowed, "OPTIONS")).encode()))
            await send_json(send, exc.status, error_body(exc.status, exc.message), headers)
        return template

    # counters ----------------------------------------------------------------

    async def counter(self, token: Token, item: bytes) -> Counter:
        """The workspace's counter of this id (NotFound for any other id)."""
        counter_id = row_id(item)
        counter = None if counter_id is None else await self.store.get_counter_by_id(counter_id)
        if counter is None or counter.workspace_id != token.workspace_id:
            raise NotFound("no such counter in this workspace")
        return counter

    async def counters_route(
        self, method: str, token: Token, item: bytes | None, query: bytes, receive: Receive
    ) -> tuple[int, str, Any]:
        store = self.store
        if item is None and method == "GET":
            search = query_text(query, "q", MAX_NAME)
            limit = query_number(query, "limit", MAX_LIMIT, DEFAULT_LIMIT, minimum=1)
            offset = query_number(query, "offset", MAX_OFFSET, 0)
            after = query_text(query, "after", 1024)
            if after and offset:
                raise BadRequest("give after or offset, not both")
            page = await store.counter_page(
                token.workspace_id, search=search, limit=limit, offset=offset, after=after
            )
            data = {
                "counters": [counter_data(c) for c in page.counters],
                "total": page.total,
                "total_exact": page.exact,
                "limit": limit,
                "offset": offset,
                "next": page.next,
            }
            return 200, "Counters listed successfully", data
        if item is None:  # POST
            body = parse_object(
                await read_body(receive), frozenset(("name", "description", "visibility"))
            )
            name = string_field(body, "name")
            if name is None:
                raise BadRequest("name is missing")
            description = string_field(body, "description", "") or ""
            private = visibility_field(body) or False
            await self.counters.may_create(token.id)
            counter = await workspaces.create_counter(
                store, token.workspace_id, name, description, private
            )
            self.counters.cache.forget((counter.workspace_slug, counter.name))
            return 201, "Counter created successfully", counter_data(counter)

        counter = await self.counter(token, item)
        if method == "GET":
            return 200, "Counter retrieved successfully", counter_data(counter)
        if method == "PATCH":
            await self.change_counter(counter, await read_body(receive))
            self.counters.cache.forget((counter.workspace_slug, counter.name))
            changed = await self.counter(token, item)
            return 200, "Counter updated successfully", counter_data(changed)
        # DELETE
        if not await store.delete_counter(counter.id):
            raise NotFound("no such counter in this workspace")
        self.counters.cache.forget((counter.workspace_slug, counter.name))
        return 200, "Counter deleted successfully", {"id": counter.id, "name": counter.name}

    async def change_counter(self, counter: Counter, raw: bytes) -> None:
        """Apply a PATCH body to the counter: every field is checked before anything is
        written, then all of it is saved in one transaction, which refuses (409) a changed
        bound the value breaks; a 400 or a 409 changes nothing."""
        body = parse_object(raw, COUNTER_FIELDS)
        if not body:
            raise BadRequest(f"nothing to change: give {', '.join(sorted(COUNTER_FIELDS))}")
        described = string_field(body, "description")
        description = None if described is None else workspaces.check_description(described)
        private = visibility_field(body)
        allowed = origins_field(body)
        floor = bound_field(body, "floor", counter.floor)
        ceiling = bound_field(body, "ceiling", counter.ceiling)
        try:
            rules.check_bounds(floor, ceiling)
        except BadRequest as exc:
            if "floor" in body and "ceiling" in body:
                raise  # the body contradicts itself
            # one new bound against the stored other one: a conflict with the counter
            raise Conflict(f"{exc.message}; nothing was changed") from None
        change = CounterChange(
            description=description,
            private=private,
            bounds=(floor, ceiling) if body.keys() & {"floor", "ceiling"} else None,
            origins=allowed,
            unique_window=unique_field(body),
            unique_by_address=rules.check_unique_by(body["unique_by"])
            if "unique_by" in body
            else None,
        )
        if await self.counters.change_settings(counter, change) is None:
            raise NotFound("no such counter in this workspace")

    async def alerts_routes(
        self, route: Route, method: str, token: Token, query: bytes, receive: Receive
    ) -> tuple[int, str, Any]:
        if self.alerts is None:
            raise NotFound("alerts are not available on this server")
        body = await read_body(receive) if method in ("POST", "PATCH") else b""
        if route.kind == b"webhooks":
            return await self.alerts.webhooks_route(method, token, route.item, body)
        if route.kind == b"alerts":
            return await self.alerts.alerts_route(method, token, route.item, body)
        return await self.alerts.deliveries_route(method, token, route.item, query)

    # settings ----------------------------------------------------------------

    async def settings_route(
        self, method: str, token: Token, receive: Receive
    ) -> tuple[int, str, Any]:
        ws = await self.store.get_workspace_by_id(token.workspace_id)
        if ws is None:
            raise NotFound("no such workspace")
        server = self.store.counter_quota
        if method == "GET":
            usage = await self.store.counter_usage(ws.id)
            return 200, "Settings retrieved successfully", settings_data(ws, usage, server)
        body = parse_object(await read_body(receive), SETTINGS_FIELDS)
        if not body:
            raise BadRequest(f"nothing to change: give {', '.join(sorted(SETTINGS_FIELDS))}")
        v1_open = body.get("v1_open", ws.v1_open)
        if type(v1_open) is not bool:
            raise BadRequest("v1_open must be true or false")
        allowed = origins_field(body)
        quota = quota_field(body, server) if "counter_quota" in body else None
        pages = {k: body.get(k, getattr(ws, k)) for k in ("page_views", "honour_dnt")}
        for key, value in pages.items():
            if type(value) is not bool:
                raise BadRequest(f"{key} must be true or false")
        if pages["page_views"]:
            rules.check_page_views(ws.origins if allowed is None else allowed)
        zone = None
        if "timezone" in body:
            named = body["timezone"]
            if named is not None and not isinstance(named, str):
                raise BadRequest("timezone must be an IANA zone name, or null for the server's")
            zone = periods.check_zone(named or "")
        if "v1_open" in body or "allowed_origins" in body:
            changed = await self.store.set_workspace_rules(
                ws.id, v1_open=v1_open, origins=ws.origins if allowed is None else allowed
            )
            self.namespaces.forget(ws.slug)
            if changed is None:
                raise NotFound("no such workspace")
            ws = changed
        if "page_views" in body or "honour_dnt" in body:
            changed = await self.store.set_page_counting(ws.id, **pages)
            self.namespaces.forget(ws.slug)
            if changed is None:
                raise NotFound("no such workspace")
            ws = changed
        if "counter_quota" in body:
            await self.store.set_counter_quota(ws.id, quota)
        if zone is not None:
            await self.store.set_workspace_timezone(ws.id, zone)
            self.counters.cache.forget_workspace(ws.slug)
            ws = await self.store.get_workspace_by_id(ws.id) or ws
        usage = await self.store.counter_usage(ws.id)
        return 200, "Settings updated successfully", settings_data(ws, usage, server)

    # tokens ------------------------------------------------------------------

    async def tokens_route(
        self, method: str, token: Token, item: bytes | None, receive: Receive
    ) -> tuple[int, str, Any]:
        store = self.store
        if item is None and method == "GET":
            tokens = await store.list_tokens(token.workspace_id)
            return 200, "Tokens listed successfully", {"tokens": [token_data(t) for t in tokens]}
        if item is None:  # POST
            body = parse_object(
                await read_body(receive), frozenset(("permission", "name", "expires_in_days"))
            )
            text = string_field(body, "permission")
            try:
                permission = Permission.parse(text if text is not None else "")
            except ValueError:
                raise BadRequest('permission must be "read", "write" or "admin"') from None
            name = workspaces.check_token_name(string_field(body, "name", "") or "", required=False)
            days = body.get("expires_in_days")
            if type(days) is float and days.is_integer():
                days = int(days)  # 30.0 is a whole number, as JSON Schema's "integer" says
            if days is not None and (type(days) is not int or not 1 <= days <= MAX_EXPIRY_DAYS):
                raise BadRequest(
                    f"expires_in_days must be a whole number from 1 to {MAX_EXPIRY_DAYS}"
                )
            expires_at = None if days is None else time.time() + days * 86400
            issued = await issue_token(
                store, self.verifier.key, token.workspace_id, permission, name, expires_at
            )
            data = {**token_data(issued.token), "token": issued.secret}
            return 201, "Token created successfully; it is shown only once", data
        # DELETE
        found = None
        wanted = None if item is None else row_id(item)
        if wanted is not None:
            found = next(
                (t for t in await store.list_tokens(token.workspace_id) if t.id == wanted), None
            )
        if found is None:
            raise NotFound("no such token in this workspace")
        await store.revoke_token(found.id)
        revoked = next(t for t in await store.list_tokens(token.workspace_id) if t.id == found.id)
        return 200, "Token revoked successfully", token_data(revoked)

    # shares ------------------------------------------------------------------

    async def shares_route(
        self, method: str, token: Token, item: bytes | None, receive: Receive, origin: str
    ) -> tuple[int, str, Any]:
        """List, create (the answer carries the link's `url`, a secret one only then)
        and revoke the workspace's shares (tally/shares.py)."""
        store = self.store
        if item is None and method == "GET":
            listed = await store.list_shares(token.workspace_id)
            return (
                200,
                "Shares listed successfully",
                {"shares": [share_data(s, origin) for s in listed]},
            )
        if item is None:  # POST
            body = parse_object(await read_body(receive), SHARE_FIELDS)
            target = body.get("counter_id")
            counter_id = None if target is None else rules.json_int(target)
            if target is not None and (counter_id is None or not 0 < counter_id < 2**63):
                raise BadRequest("counter_id must be a counter's id, or null for the overview")
            public = body.get("public", False)
            if type(public) is not bool:
                raise BadRequest("public must be true or false")
            picked = body.get("include_private", [])
            if not isinstance(picked, list) or not all(
                type(i) is int and 0 < i < 2**63 for i in picked
            ):
                raise BadRequest("include_private must be a list of counter ids")
            share, secret = await shares.create(
                store,
                token.workspace_id,
                counter_id,
                public=public,
                name=string_field(body, "name", "") or "",
                days=shares.check_days(body.get("expires_in_days")),
                include=tuple(picked),
            )
            data = share_data(share, origin, secret)
            note = "" if share.public else "; its url is shown only once"
            return 201, f"Share created successfully{note}", data
        share_id = row_id(item)
        if share_id is None or not await store.revoke_share(
            token.workspace_id, share_id, time.time()
        ):
            raise NotFound("no such live share in this workspace")
        revoked = await store.get_share(token.workspace_id, share_id)
        assert revoked is not None
        return 200, "Share revoked successfully", share_data(revoked, origin)


def share_data(s: Share, origin: str, secret: str | None = None) -> dict[str, Any]:
    """A share as the management API shows it; `url` only for a public one, or for a
    secret one as it is made (its secret is kept nowhere)."""
    path = shares.path(s, secret)
    return {
        "id": s.id,
        "counter_id": s.counter_id,
        "public": s.public,
        "name": s.name,
        "prefix": s.prefix or None,
        "include_private": list(s.include_private),
        "url": None if path is None else origin + path,
        "created_at": rfc3339(s.created_at),
        "expires_at": _time(s.expires_at),
        "revoked_at": _time(s.revoked_at),
    }


def _origin(scope: Scope) -> str:
    """The request's own origin (a share's url, without TALLY_PUBLIC_URL)."""
    host = dict(scope.get("headers") or []).get(b"host", b"localhost").decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}"


async def send_preflight(send: Send, allowed: tuple[str, ...]) -> None:
    methods = ", ".join((*allowed, "OPTIONS")).encode()
    headers: Headers = [
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-methods", methods),
        (b"access-control-allow-headers", b"Authorization, Content-Type"),
        (b"access-control-max-age", b"86400"),
        (b"allow", methods),
    ]
    await send(response_start(204, headers))
    await send({"type": "http.response.body", "body": b""})
