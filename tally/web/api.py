"""The V2 JSON endpoints: GET /v2/{workspace}/{name}[/up|/down|/reset|/stats|/set].

The hot path reads top to bottom in `V2Api.__call__`: parse, authenticate, limit,
apply, respond. The first three steps are tally.web.gate's, which the management API
and V1 take too.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson

from tally import origins
from tally.auth import TokenVerifier
from tally.config import Network
from tally.counters import MAX_BY, MAX_SET, Counters, CounterView
from tally.errors import BadRequest, TallyError
from tally.models import Counter
from tally.numbers import whole_number
from tally.ratelimit import Limiter
from tally.visitors import Visitor
from tally.web import gate
from tally.web.gate import Gate, other_method
from tally.web.gate import Route as Route  # re-exported: the endpoints beside V2 take it
from tally.web.http import (
    Headers,
    Receive,
    Scope,
    Send,
    client_key,
    header,
    send_body,
    send_error,
    send_json,
)

ACTIONS = frozenset((b"up", b"down", b"reset", b"stats", b"set", b"badge.svg", b"stream"))


def rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class CounterJSON:
    """Renders counter responses. The fields that do not change with the counts are
    encoded once per counter (and again when the counter is re-read), the rest is
    spliced in: the hot path encodes four numbers and a time stamp."""

    _COUNTS = b',"up_count":%d,"down_count":%d,"value":%d,"updated_at":"%b"}}'
    _MAX = 50_000  # more than the counters of a busy site, each re-encoded on a miss

    def __init__(self) -> None:
        self._heads: dict[int, tuple[Counter, bytes]] = {}
        self._second = -1
        self._stamp = b""

    def _head(self, c: Counter) -> bytes:
        hit = self._heads.get(c.id)
        if hit is not None and hit[0] is c:
            return hit[1]
        static = {
            "id": c.id,
            "name": c.name,
            "slug": c.name,
            "description": c.description,
            "team_id": c.workspace_id,
            "user_id": c.owner_id,
            "workspace_id": c.workspace_id,
            "workspace_slug": c.workspace_slug,
            "private": c.private,
            "created_at": rfc3339(c.created_at),
        }
        head = orjson.dumps(static)[:-1]  # '{"id":..,"created_at":".."' (open)
        if len(self._heads) >= self._MAX:
            self._heads.clear()
        self._heads[c.id] = (c, head)
        return head

    def _time(self, ts: float) -> bytes:
        second = int(ts)
        if second != self._second:
            self._second = second
            self._stamp = rfc3339(ts).encode()
        return self._stamp

    def data(self, view: CounterView) -> bytes:
        up, down = view.up_count, view.down_count
        counts = self._COUNTS % (up, down, up - down, self._time(view.updated_at))
        if view.counted is not None:  # an up of a counter with a unique window
            counts = counts[:-2] + (b',"counted":true}}' if view.counted else b',"counted":false}}')
        return self._head(view.counter) + counts[:-1]

    def response(self, view: CounterView, prefix: bytes = b'{"code":"200","data":') -> bytes:
        return prefix + self.data(view) + b"}"


def stats_data(view: CounterView, stats: dict[str, Any]) -> dict[str, Any]:
    c = view.counter
    return {
        "id": c.id,
        "counter_id": c.id,
        "up_count": view.up_count,
        "down_count": view.down_count,
        "stats": stats,
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(view.updated_at),
    }


# an endpoint that is not JSON (badge.svg, stream): it reads, limits and answers itself
Handler = Callable[[Scope, Receive, Send, Route], Awaitable[None]]


def parse_route(path: bytes) -> Route:
    """/v2/{workspace}/{name}[/{action}][/] -> Route, or NotFound / BadRequest."""
    return gate.parse_route(path, ACTIONS)


def query_number(
    query: bytes, name: str, maximum: int, default: int | None, minimum: int = 0
) -> int:
    """The whole number `name` of a query string, minimum..maximum (tally.numbers);
    `default` if it is absent (None: required). BadRequest if it is empty, not a number,
    repeated or out of range."""
    try:
        values = parse_qs(query.decode("utf-8"), keep_blank_values=True).get(name)
    except UnicodeDecodeError:
        raise BadRequest("the query string is not valid UTF-8") from None
    if values is None:
        if default is None:
            raise BadRequest(f"{name} is missing: give {name}=N")
        return default
    if len(values) > 1:
        raise BadRequest(f"{name} is given more than once")
    value = whole_number(values[0], minimum, maximum)
    if value is None:
        raise BadRequest(f"{name} must be a whole number from {minimum} to {maximum}")
    return value


def parse_by(query: bytes) -> int:
    """?by=N of up and down: 1 to MAX_BY, 1 without it."""
    return query_number(query, "by", MAX_BY, 1, minimum=1) if query else 1


def origin_source(scope: Scope) -> origins.Source:
    """The request's Origin and Referer headers (tally.origins)."""
    origin = referer = None
    for key, value in scope["headers"]:
        if key == b"origin":
            origin = bytes(value)
        elif key == b"referer":
            referer = bytes(value)
    return origin, referer


# route templates, the `route` label of the request metrics
TEMPLATES = {
    b"": "/v2/{workspace}/{name}",
    **{a: "/v2/{workspace}/{name}/" + a.decode() for a in sorted(ACTIONS)},
}
OTHER = "/v2/other"  # a path that is no route

RESET_PREFIX = b'{"code":"200","message":"Counter reset successfully","data":'
STATS_MESSAGE = "Counter stats retrieved successfully"


class V2Api:
    _MAX_ROUTES = 50_000

    def __init__(
        self,
        counters: Counters,
        verifier: TokenVerifier,
        limiter: Limiter | None,
        trusted_proxies: tuple[Network, ...] = (),
        ipv6_prefix: int = 64,
    ) -> None:
        self.counters = counters
        self.verifier = verifier
        self.gate = Gate(limiter, trusted_proxies, verifier, ipv6_prefix)
        self.limiter = limiter  # /readyz and /metrics read it
        self.trusted_proxies = trusted_proxies
        self.ipv6_prefix = ipv6_prefix
        self.render = CounterJSON()
        self._routes: dict[bytes, Route] = {}
        self.handlers: dict[bytes, Handler] = {}

    @property
    def rejections(self) -> int:
        """Requests refused by the rate limit."""
        return self.gate.rejections

    def route(self, path: bytes) -> Route:
        """parse_route, remembered for the paths seen recently."""
        route = self._routes.get(path)
        if route is None:
            route = parse_route(path)
            if len(self._routes) >= self._MAX_ROUTES:
                self._routes.clear()
            self._routes[path] = route
        return route

    def visitor(self, scope: Scope) -> Visitor:
        """Who an up comes from, for unique visitors: the client key (as the rate limit
        sees it: the client IP, an IPv6 client's /64) and the User-Agent. Hashed at once
        (tally.visitors), never kept."""
        client = client_key(scope, self.trusted_proxies, self.ipv6_prefix)
        return client, header(scope, b"user-agent") or b""

    def template(self, path: bytes) -> str:
        """The route template of `path` (OTHER if it is no route)."""
        try:
            return TEMPLATES[self.route(path)[0]]
        except TallyError:
            return OTHER

    async def __call__(self, scope: Scope, receive: Receive, send: Send, path: bytes) -> str:
        """Answer the request; its route template."""
        limits: Headers | None = None
        template = OTHER
        try:
            # parse
            route = self.route(path)
            action, workspace, name = route
            template = TEMPLATES[action]
            if scope["method"] != "GET":
                await other_method(scope, send)
                return template
            handler = self.handlers.get(action)
            if handler is not None:
                await handler(scope, receive, send, route)
                return template

            # authenticate and limit, keyed by the decoded path so no spelling of a URL
            # escapes its budget
            token, limits = await self.gate.admit(scope, route, time.monotonic())

            # apply and respond
            counters = self.counters
            query: bytes = scope.get("query_string", b"")
            if action == b"up" or action == b"down":
                by = parse_by(query)
                # only counts without a token of the workspace are held to allowed origins
                own = token is not None and token.workspace_slug == workspace
                source = origins.NO_SOURCE if own else origin_source(scope)
                if action == b"up":
                    view = await counters.count(
                        workspace, name, token, by, 0, source, lambda: self.visitor(scope)
                    )
                else:
                    view = await counters.count(workspace, name, token, 0, by, source)
            elif action == b"":
                view = await counters.get(workspace, name, token)
            elif action == b"set":
                up = query_number(query, "up_count", MAX_SET, None)
                down = query_number(query, "down_count", MAX_SET, 0)
                view = await counters.set(workspace, name, token, up, down)
            elif action == b"reset":
                view = await counters.reset(workspace, name, token)
                await send_body(send, self.render.response(view, RESET_PREFIX), limits)
                return template
            else:
                view, stats = await counters.stats(workspace, name, token)
                body = {"code": "200", "message": STATS_MESSAGE, "data": stats_data(view, stats)}
                await send_json(send, 200, body, limits)
                return template
            await send_body(send, self.render.response(view), limits)
        except TallyError as exc:
            await send_error(send, exc, exc.headers or limits)
        return template
