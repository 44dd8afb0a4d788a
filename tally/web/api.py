"""The V2 JSON endpoints: GET /v2/{workspace}/{name}[/up|/down|/reset|/stats|/set].

The hot path reads top to bottom in `V2Api.__call__`: parse, authenticate, limit,
apply, respond.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes

import orjson

from tally import origins
from tally.auth import TokenVerifier
from tally.config import Network
from tally.counters import MAX_BY, MAX_SET, Counters, CounterView, check_name
from tally.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    TallyError,
    Unauthorized,
)
from tally.models import Counter, Token
from tally.ratelimit import Decision, Limiter
from tally.web.http import (
    Headers,
    Receive,
    Scope,
    Send,
    client_ip,
    header,
    send_body,
    send_error,
    send_json,
    send_preflight,
)

ACTIONS = frozenset((b"up", b"down", b"reset", b"stats", b"set", b"badge.svg", b"stream"))
_DIGITS = re.compile(r"[0-9]{1,16}")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")  # a % not followed by two hex digits


def rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class CounterJSON:
    """Renders counter responses. The fields that do not change with the counts are
    encoded once per counter (and again when the counter is re-read), the rest is
    spliced in: the hot path encodes four numbers and a time stamp."""

    _COUNTS = b',"up_count":%d,"down_count":%d,"value":%d,"updated_at":"%b"}}'
    _MAX = 10_000

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


def name_segment(kind: str, raw: bytes) -> str:
    """A path segment as a name: percent-decoded once (so `%252F` is the name `%2F`),
    refused if an escape is malformed or the bytes are no UTF-8, then `check_name`."""
    try:
        if b"%" in raw:
            if _BAD_ESCAPE.search(raw):
                raise BadRequest(f"the {kind} name has a malformed percent-escape")
            text = unquote_to_bytes(raw).decode("utf-8")
        else:
            text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"the {kind} name is not valid UTF-8") from None
    return check_name(kind, text)


Route = tuple[bytes, str, str]  # (action, workspace, name); action b"" is get
# an endpoint that is not JSON (badge.svg, stream): it reads, limits and answers itself
Handler = Callable[[Scope, Receive, Send, Route], Awaitable[None]]


def parse_route(path: bytes) -> Route:
    """/v2/{workspace}/{name}[/{action}][/] -> Route, or NotFound / BadRequest."""
    parts = path[4:].split(b"/")
    if len(parts) > 2 and parts[-1] == b"":
        parts.pop()
    if len(parts) == 2:
        action = b""
    elif len(parts) == 3 and parts[2] in ACTIONS:
        action = parts[2]
    else:
        raise NotFound()
    return action, name_segment("workspace", parts[0]), name_segment("counter", parts[1])


def query_number(query: bytes, name: str, maximum: int, default: int | None) -> int:
    """The whole number `name` of a query string, 0..maximum; `default` if it is absent
    (None: required). BadRequest if it is empty, not a number, repeated or too big."""
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
    if not _DIGITS.fullmatch(values[0]) or int(values[0]) > maximum:
        raise BadRequest(f"{name} must be a whole number from 0 to {maximum}")
    return int(values[0])


def parse_by(query: bytes) -> int:
    """?by=N of up and down: 1 to MAX_BY, 1 without it."""
    by = query_number(query, "by", MAX_BY, 1) if query else 1
    if by < 1:
        raise BadRequest(f"by must be a whole number from 1 to {MAX_BY}")
    return by


def origin_source(scope: Scope) -> origins.Source:
    """The request's Origin and Referer headers (tally.origins)."""
    origin = referer = None
    for key, value in scope["headers"]:
        if key == b"origin":
            origin = bytes(value)
        elif key == b"referer":
            referer = bytes(value)
    return origin, referer


def limit_headers(d: Decision) -> Headers:
    headers = [
        (b"x-ratelimit-limit", b"%d" % d.limit),
        (b"x-ratelimit-remaining", b"%d" % d.remaining),
        (b"x-ratelimit-reset", b"%d" % math.ceil(d.reset_after)),
    ]
    if not d.allowed:
        headers.append((b"retry-after", b"%d" % max(1, math.ceil(d.retry_after))))
    return headers


# route templates, the `route` label of the request metrics
TEMPLATES = {
    b"": "/v2/{workspace}/{name}",
    **{a: "/v2/{workspace}/{name}/" + a.decode() for a in sorted(ACTIONS)},
}
OTHER = "/v2/other"  # a path that is no route

RESET_PREFIX = b'{"code":"200","message":"Counter reset successfully","data":'
STATS_MESSAGE = "Counter stats retrieved successfully"


class V2Api:
    _MAX_ROUTES = 10_000

    def __init__(
        self,
        counters: Counters,
        verifier: TokenVerifier,
        limiter: Limiter | None,
        trusted_proxies: tuple[Network, ...] = (),
    ) -> None:
        self.counters = counters
        self.verifier = verifier
        self.limiter = limiter
        self.trusted_proxies = trusted_proxies
        self.render = CounterJSON()
        self._routes: dict[bytes, Route] = {}
        self.handlers: dict[bytes, Handler] = {}
        self.rejections = 0  # requests refused by the rate limit

    def route(self, path: bytes) -> Route:
        """parse_route, remembered for the paths seen recently."""
        route = self._routes.get(path)
        if route is None:
            route = parse_route(path)
            if len(self._routes) >= self._MAX_ROUTES:
                self._routes.clear()
            self._routes[path] = route
        return route

    def template(self, path: bytes) -> str:
        """The route template of `path` (OTHER if it is no route)."""
        try:
            return TEMPLATES[self.route(path)[0]]
        except TallyError:
            return OTHER

    async def limit(
        self, scope: Scope, route: Route, token: Token | None, now: float
    ) -> Headers | None:
        """Count the request against its (path, token or client IP) budget; RateLimited if
        it is spent. The rate-limit headers for the response."""
        if self.limiter is None:
            return None
        who: object = token.id if token else client_ip(scope, self.trusted_proxies)
        decision = await self.limiter.hit((*route, who), now)
        if not decision.allowed:
            self.rejections += 1
            raise RateLimited(
                f"rate limit of {decision.limit} requests exceeded for this path, "
                f"retry in {max(1, math.ceil(decision.retry_after))} s",
                limit_headers(decision),
            )
        return limit_headers(decision)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, path: bytes) -> str:
        """Answer the request; its route template."""
        limits: Headers | None = None
        template = OTHER
        try:
            # parse
            route = self.route(path)
            action, workspace, name = route
            template = TEMPLATES[action]
            method = scope["method"]
            if method != "GET":
                if method == "OPTIONS":
                    await send_preflight(send)
                    return template
                raise MethodNotAllowed(f"{method} is not allowed here: use GET")
            handler = self.handlers.get(action)
            if handler is not None:
                await handler(scope, receive, send, route)
                return template

            # authenticate
            now = time.monotonic()
            try:
                token = await self.verifier.verify(header(scope, b"authorization"), now)
            except Unauthorized:
                # bad tokens count against the client IP's budget: guessing is limited too
                limits = await self.limit(scope, route, None, now)
                raise

            # limit, keyed by the decoded path so no spelling of a URL escapes its budget
            limits = await self.limit(scope, route, token, now)

            # apply and respond
            counters = self.counters
            query: bytes = scope.get("query_string", b"")
            if action == b"up" or action == b"down":
                by = parse_by(query)
                # only counts without a token of the workspace are held to allowed origins
                own = token is not None and token.workspace_slug == workspace
                source = origins.NO_SOURCE if own else origin_source(scope)
                if action == b"up":
                    view = await counters.count(workspace, name, token, by, 0, source)
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
        except RateLimited as exc:
            await send_error(send, exc, exc.headers)
        except TallyError as exc:
            await send_error(send, exc, limits)
        return template
