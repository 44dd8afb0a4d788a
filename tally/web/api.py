"""The V2 JSON endpoints: GET /v2/{workspace}/{name}[/up|/down|/reset|/stats].

The hot path reads top to bottom in `V2Api.__call__`: parse, authenticate, limit,
apply, respond.
"""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import unquote_to_bytes

from tally.auth import TokenVerifier
from tally.config import Network
from tally.counters import Counters, CounterView, check_name
from tally.errors import BadRequest, MethodNotAllowed, NotFound, RateLimited, TallyError
from tally.ratelimit import Decision, MemoryRateLimiter
from tally.web.http import (
    Headers,
    Scope,
    Send,
    client_ip,
    header,
    send_error,
    send_json,
    send_preflight,
)

ACTIONS = frozenset((b"up", b"down", b"reset", b"stats"))


def rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def counter_data(view: CounterView) -> dict[str, Any]:
    c = view.counter
    return {
        "id": c.id,
        "name": c.name,
        "slug": c.name,
        "description": c.description,
        "team_id": c.workspace_id,
        "user_id": 0,
        "workspace_id": c.workspace_id,
        "workspace_slug": c.workspace_slug,
        "up_count": view.up_count,
        "down_count": view.down_count,
        "value": view.up_count - view.down_count,
        "private": c.private,
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(view.updated_at),
    }


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


def _segment(kind: str, raw: bytes) -> str:
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"the {kind} name is not valid UTF-8") from None
    return check_name(kind, text)


def limit_headers(d: Decision) -> Headers:
    headers = [
        (b"x-ratelimit-limit", str(d.limit).encode()),
        (b"x-ratelimit-remaining", str(d.remaining).encode()),
        (b"x-ratelimit-reset", str(math.ceil(d.reset_after)).encode()),
    ]
    if not d.allowed:
        headers.append((b"retry-after", str(max(1, math.ceil(d.retry_after))).encode()))
    return headers


class V2Api:
    def __init__(
        self,
        counters: Counters,
        verifier: TokenVerifier,
        limiter: MemoryRateLimiter | None,
        trusted_proxies: tuple[Network, ...] = (),
    ) -> None:
        self.counters = counters
        self.verifier = verifier
        self.limiter = limiter
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, send: Send, path: bytes) -> None:
        limits: Headers | None = None
        try:
            # parse: /v2/{workspace}/{name}[/{action}][/]
            parts = path[4:].split(b"/")
            if len(parts) > 2 and parts[-1] == b"":
                parts.pop()
            if len(parts) == 2:
                action = b""
            elif len(parts) == 3 and parts[2] in ACTIONS:
                action = parts[2]
            else:
                raise NotFound()
            method = scope["method"]
            if method != "GET":
                if method == "OPTIONS":
                    return await send_preflight(send)
                raise MethodNotAllowed(f"{method} is not allowed here: use GET")
            workspace = _segment("workspace", parts[0])
            name = _segment("counter", parts[1])

            # authenticate
            now = time.monotonic()
            token = await self.verifier.verify(header(scope, b"authorization"), now)

            # limit
            if self.limiter is not None:
                who: object = token.id if token else client_ip(scope, self.trusted_proxies)
                decision = self.limiter.hit((path.rstrip(b"/"), who), now)
                limits = limit_headers(decision)
                if not decision.allowed:
                    raise RateLimited(
                        f"rate limit of {decision.limit} requests exceeded for this path, "
                        f"retry in {max(1, math.ceil(decision.retry_after))} s"
                    )

            # apply and respond
            counters = self.counters
            if action == b"up":
                view = await counters.count(workspace, name, token, 1, 0)
            elif action == b"down":
                view = await counters.count(workspace, name, token, 0, 1)
            elif action == b"":
                view = await counters.get(workspace, name, token)
            elif action == b"reset":
                view = await counters.reset(workspace, name, token)
                body = {
                    "code": "200",
                    "message": "Counter reset successfully",
                    "data": counter_data(view),
                }
                return await send_json(send, 200, body, limits)
            else:
                view, stats = await counters.stats(workspace, name, token)
                body = {
                    "code": "200",
                    "message": "Counter stats retrieved successfully",
                    "data": stats_data(view, stats),
                }
                return await send_json(send, 200, body, limits)
            await send_json(send, 200, {"code": "200", "data": counter_data(view)}, limits)
        except TallyError as exc:
            await send_error(send, exc, limits)
