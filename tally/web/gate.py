"""The steps a JSON API request takes before its action, shared by V2 (tally.web.api),
the management API (tally.web.manage) and V1 (tally.web.v1), so that their rules cannot
drift apart:

- parse: `parse_route` turns `/vN/{workspace}/{name}[/{action}][/]` into a Route;
- method: `other_method` answers a CORS preflight, or refuses anything but GET (405);
- authenticate and limit: `Gate.admit` verifies the bearer token, then counts the
  request against its (route, token or client key) budget. A bad token is counted
  against the client key's budget before it is refused, so guessing is limited too.
  The client key is the client IP, an IPv6 client's network (tally.web.http.client_key).
  V1 has no tokens and calls `Gate.limit` alone.
"""

from __future__ import annotations

import math
import re
from urllib.parse import unquote_to_bytes

from tally.auth import TokenVerifier
from tally.config import Network
from tally.counters import check_name
from tally.errors import BadRequest, MethodNotAllowed, NotFound, RateLimited, Unauthorized
from tally.models import Token
from tally.ratelimit import Decision, Limiter
from tally.web.http import Headers, Scope, Send, client_key, header, send_preflight

Route = tuple[bytes, str, str]  # (action, workspace, name); action b"" is get


_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")  # a % not followed by two hex digits


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


def parse_route(path: bytes, actions: frozenset[bytes], kind: str = "workspace") -> Route:
    """/vN/{workspace}/{name}[/{action}][/] -> Route (`kind` names the first segment in
    errors), or NotFound / BadRequest."""
    parts = path[4:].split(b"/")
    if len(parts) > 2 and parts[-1] == b"":
        parts.pop()
    if len(parts) == 2:
        action = b""
    elif len(parts) == 3 and parts[2] in actions:
        action = parts[2]
    else:
        raise NotFound()
    return action, name_segment(kind, parts[0]), name_segment("counter", parts[1])


async def other_method(scope: Scope, send: Send) -> None:
    """A request whose method is not GET: answer the CORS preflight of OPTIONS, refuse
    anything else with MethodNotAllowed."""
    method = scope["method"]
    if method != "OPTIONS":
        raise MethodNotAllowed(f"{method} is not allowed here: use GET")
    await send_preflight(send)


def limit_headers(d: Decision) -> Headers:
    headers = [
        (b"x-ratelimit-limit", b"%d" % d.limit),
        (b"x-ratelimit-remaining", b"%d" % d.remaining),
        (b"x-ratelimit-reset", b"%d" % math.ceil(d.reset_after)),
    ]
    if not d.allowed:
        headers.append((b"retry-after", b"%d" % max(1, math.ceil(d.retry_after))))
    return headers


class Gate:
    """Authentication and the rate limit of one API (its limiter, its proxies)."""

    def __init__(
        self,
        limiter: Limiter | None,
        trusted_proxies: tuple[Network, ...] = (),
        verifier: TokenVerifier | None = None,
        ipv6_prefix: int = 64,
    ) -> None:
        self.limiter = limiter
        self.trusted_proxies = trusted_proxies
        self.ipv6_prefix = ipv6_prefix
        self.verifier = verifier
        self.rejections = 0  # requests refused by the rate limit

    async def limit(
        self, scope: Scope, key: tuple[object, ...], token: Token | None, now: float
    ) -> Headers | None:
        """Count the request against its (key, token or client key) budget; RateLimited if
        it is spent. The rate-limit headers for the response."""
        if self.limiter is None:
            return None
        who: object = (
            token.id if token else client_key(scope, self.trusted_proxies, self.ipv6_prefix)
        )
        decision = await self.limiter.hit((*key, who), now)
        if not decision.allowed:
            self.rejections += 1
            raise RateLimited(
                f"rate limit of {decision.limit} requests exceeded for this path, "
                f"retry in {max(1, math.ceil(decision.retry_after))} s",
                limit_headers(decision),
            )
        return limit_headers(decision)

    async def admit(
        self, scope: Scope, key: tuple[object, ...], now: float
    ) -> tuple[Token | None, Headers | None]:
        """Authenticate, then limit: the token (None: anonymous) and the rate-limit
        headers. A bad token raises Unauthorized carrying the client key's headers."""
        assert self.verifier is not None, "a gate without a verifier cannot authenticate"
        try:
            token = await self.verifier.verify(header(scope, b"authorization"), now)
        except Unauthorized as exc:
            exc.headers = await self.limit(scope, key, None, now) or []
            raise
        return token, await self.limit(scope, key, token, now)
