"""The V1 legacy endpoints, for old clients of the retired open-source CounterAPI V1:
GET /v1/{namespace}/{name}[/up|/down|/set?count=N|/list?group_by=..&order_by=..].

A namespace is a workspace opened for V1 (`tally workspace update SLUG --v1`); `count`
is the counter's value (up_count - down_count). V1 has no tokens: it sees the public
counters of the namespace and creates them on up / down / set, as V1 did. Its bodies are
V1's own: the counter object without an envelope, errors with an integer `code` (but a
429's code is the string "429", as V1 sent it), a missing counter is 400 "record not
found". Its rate limit is its own (TALLY_V1_RATE_LIMIT, 30 per minute per path and
client IP, an IPv6 client's /64).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import parse_qs

from tally.config import Network
from tally.counters import MAX_SET, CounterView
from tally.errors import (
    BadRequest,
    MethodNotAllowed,
    RateLimited,
    StorageError,
    TallyError,
    Unavailable,
)
from tally.models import History, Workspace
from tally.namespaces import Namespaces
from tally.ratelimit import Limiter
from tally.web import gate
from tally.web.api import origin_source, query_number
from tally.web.gate import Gate, other_method
from tally.web.http import Headers, Scope, Send, client_ip, send_json

log = logging.getLogger("tally.web")

ACTIONS = frozenset((b"", b"up", b"down", b"set", b"list"))
GROUPS = ("hour", "day", "week", "month", "year")
ORDERS = ("asc", "desc")

Route = tuple[bytes, str, str]  # (action, namespace, name); b"" is get

# route templates, the `route` label of the request metrics
TEMPLATES = {
    b"": "/v1/{namespace}/{name}",
    **{a: "/v1/{namespace}/{name}/" + a.decode() for a in sorted(ACTIONS) if a},
}
V1_OTHER = "/v1/other"  # a path that is no route


def parse_route(path: bytes) -> Route:
    """/v1/{namespace}/{name}[/{action}][/] -> Route, or NotFound / BadRequest."""
    return gate.parse_route(path, ACTIONS, "namespace")


def query_choice(query: bytes, name: str, choices: tuple[str, ...], default: str) -> str:
    try:
        values = parse_qs(query.decode("utf-8"), keep_blank_values=True).get(name)
    except UnicodeDecodeError:
        raise BadRequest("the query string is not valid UTF-8") from None
    if values is None:
        return default
    if len(values) > 1 or values[0] not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}")
    return values[0]


def period_start(hour: int, group: str, tz: tzinfo) -> datetime:
    """The local start of the period (of kind `group`) holding UTC hour index `hour`."""
    local = datetime.fromtimestamp(hour * 3600, tz)
    if group == "hour":
        return local
    day = local.date()
    if group == "week":
        day -= timedelta(days=day.weekday())
    elif group == "month":
        day = day.replace(day=1)
    elif group == "year":
        day = day.replace(month=1, day=1)
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def count_list(history: History, group: str, order: str, tz: tzinfo) -> list[dict[str, Any]]:
    """[{"count": events, "date": period start}] for the periods with events."""
    sums: dict[datetime, int] = defaultdict(int)
    for hour, up, down in history.buckets:
        sums[period_start(hour, group, tz)] += up + down
    periods = sorted((p for p, n in sums.items() if n), reverse=order == "desc")
    return [{"count": sums[p], "date": p.isoformat()} for p in periods]


class V1Api:
    def __init__(
        self,
        namespaces: Namespaces,
        limiter: Limiter | None,
        trusted_proxies: tuple[Network, ...] = (),
        ipv6_prefix: int = 64,
    ) -> None:
        self.namespaces = namespaces
        # V1's own limiter; no tokens
        self.gate = Gate(limiter, trusted_proxies, ipv6_prefix=ipv6_prefix)
        self.tz = namespaces.counters.tz

    def client(self, scope: Scope) -> str:
        """The client IP, as the rate limit sees it (behind trusted proxies too)."""
        return client_ip(scope, self.gate.trusted_proxies)

    def _time(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, self.tz).isoformat(timespec="seconds")

    def counter_json(self, view: CounterView, ws: Workspace | None) -> dict[str, Any]:
        c = view.counter
        created = ws.created_at if ws is not None else c.created_at
        return {
            "id": c.id,
            "name": c.name,
            "count": view.up_count - view.down_count,
            "created_at": self._time(c.created_at),
            "updated_at": self._time(view.updated_at),
            "namespace_id": c.workspace_id,
            "namespace": {
                "id": c.workspace_id,
                "name": c.workspace_slug,
                "created_at": self._time(created),
                "updated_at": self._time(created),
            },
        }

    async def __call__(self, scope: Scope, send: Send, path: bytes) -> str:
        """Answer the request; its route template."""
        limits: Headers | None = None
        template = V1_OTHER
        try:
            action, namespace, name = route = parse_route(path)
            template = TEMPLATES[action]
            if scope["method"] != "GET":
                await other_method(scope, send)
                return template
            # limit (V1 has no tokens: by client IP, its own limiter)
            limits = await self.gate.limit(scope, route, None, time.monotonic())
            query: bytes = scope.get("query_string", b"")
            namespaces = self.namespaces
            if action == b"list":
                group = query_choice(query, "group_by", GROUPS, "day")
                order = query_choice(query, "order_by", ORDERS, "asc")
                _, history = await namespaces.history(namespace, name)
                body: Any = count_list(history, group, order, self.tz)
                await send_json(send, 200, body, limits)
                return template
            if action == b"":
                view = await namespaces.get(namespace, name)
            elif action == b"set":
                count = query_number(query, "count", MAX_SET, None)
                view = await namespaces.set(
                    namespace, name, count, origin_source(scope), self.client(scope)
                )
            else:
                up = 1 if action == b"up" else 0
                view = await namespaces.count(
                    namespace, name, up, origin_source(scope), self.client(scope)
                )
            ws = await namespaces.workspace(namespace)
            await send_json(send, 200, self.counter_json(view, ws), limits)
        except RateLimited as exc:  # V1 sent this code as a string
            await send_json(send, 429, {"code": "429", "message": exc.message}, exc.headers)
        except TallyError as exc:
            await self.error(send, exc, limits)
        except StorageError as exc:
            log.warning("storage error on %s: %s", path, exc)
            await self.error(send, Unavailable(), limits)
        return template

    @staticmethod
    async def error(send: Send, exc: TallyError, limits: Headers | None) -> None:
        headers = list(limits) if limits else []
        if isinstance(exc, MethodNotAllowed):
            headers.append((b"allow", b"GET, OPTIONS"))
        elif isinstance(exc, Unavailable):
            headers.append((b"retry-after", b"1"))
        await send_json(send, exc.status, {"code": exc.status, "message": exc.message}, headers)
