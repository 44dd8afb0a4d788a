"""ASGI plumbing shared by the endpoints: JSON responses, errors, headers, client IP and
the client key that per-client limits count by."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

import orjson

from tally.config import Network
from tally.errors import MethodNotAllowed, TallyError, Unavailable
from tally.logs import REQUEST_ID

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_HEADERS: Headers = [
    (b"content-type", b"application/json"),
    (b"access-control-allow-origin", b"*"),
    (
        b"access-control-expose-headers",
        b"X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After, X-Request-Id",
    ),
    (b"cache-control", b"no-store"),
]

PREFLIGHT_HEADERS: Headers = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, OPTIONS"),
    (b"access-control-allow-headers", b"Authorization, Content-Type"),
    (b"access-control-max-age", b"86400"),
    (b"allow", b"GET, OPTIONS"),
]

_STATUS_CODES = {s: str(s) for s in (200, 400, 401, 403, 404, 405, 409, 429, 500, 503)}


async def send_json(send: Send, status: int, body: Any, extra: Headers | None = None) -> None:
    await send_body(send, orjson.dumps(body), extra, status)


# the status of the request's answer, once it started (for the metrics and the access log:
# every response starts in `response_start`, so seeing it needs no wrapper around `send`)
RESPONSE_STATUS: ContextVar[int] = ContextVar("tally_response_status", default=0)


def response_start(status: int, headers: Headers) -> Message:
    """The `http.response.start` message, with the request's X-Request-Id."""
    RESPONSE_STATUS.set(status)
    request_id = REQUEST_ID.get()
    if request_id is not None:
        headers = [*headers, (b"x-request-id", request_id)]
    return {"type": "http.response.start", "status": status, "headers": headers}


async def send_body(
    send: Send, payload: bytes, extra: Headers | None = None, status: int = 200
) -> None:
    """Send an encoded JSON body."""
    headers = JSON_HEADERS + extra if extra else JSON_HEADERS
    await send(response_start(status, headers))
    await send({"type": "http.response.body", "body": payload})


async def send_text(send: Send, payload: bytes, content_type: bytes) -> None:
    await send(response_start(200, [(b"content-type", content_type)]))
    await send({"type": "http.response.body", "body": payload})


def error_body(status: int, message: str) -> dict[str, str]:
    return {"code": _STATUS_CODES.get(status) or str(status), "message": message}


async def send_error(send: Send, exc: TallyError, extra: Headers | None = None) -> None:
    headers = list(extra) if extra else []
    if isinstance(exc, MethodNotAllowed):
        headers.append((b"allow", b"GET, OPTIONS"))
    elif isinstance(exc, Unavailable):
        headers.append((b"retry-after", b"1"))
    await send_json(send, exc.status, error_body(exc.status, exc.message), headers)


async def send_preflight(send: Send) -> None:
    await send(response_start(204, PREFLIGHT_HEADERS))
    await send({"type": "http.response.body", "body": b""})


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


_ENTITY_TAG = re.compile(rb'(?:W/)?("[^"]*")')


def none_match(scope: Scope, tag: bytes) -> bool:
    """The request's If-None-Match names `tag` (a strong `"..."` tag): `*`, or a list
    holding it, by the weak comparison RFC 9110 13.1.2 prescribes for this header (a
    `W/` prefix does not matter). Several header lines form one list."""
    lines = [bytes(v) for k, v in scope["headers"] if k == b"if-none-match"]
    if not lines:
        return False
    value = b",".join(lines)
    if value.strip() == b"*":
        return True
    return any(m.group(1) == tag for m in _ENTITY_TAG.finditer(value))


def client_ip(scope: Scope, trusted: tuple[Network, ...]) -> str:
    """The socket's peer; behind a trusted proxy, the nearest untrusted X-Forwarded-For hop.

    Hops are read from the right (the nearest proxy's own entry) while they are trusted.
    A hop that is not an IP address ends the walk at the last address known, the hop
    that reported it: a client's own text never becomes its identity. Addresses are
    returned normalised, so one client has one spelling."""
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    # several header lines form one list (RFC 9110 5.3), in order
    lines = [bytes(v) for k, v in scope["headers"] if k == b"x-forwarded-for"]
    known = peer
    for hop in reversed(b",".join(lines).decode("latin-1").split(",")):
        try:
            ip = ipaddress.ip_address(hop.strip())
        except ValueError:
            return known
        known = str(ip)
        if not any(ip in net for net in trusted):
            return known
    return known


def client_key(scope: Scope, trusted: tuple[Network, ...], ipv6_prefix: int) -> str:
    """Who per-client limits count a request against: the client IP (`client_ip`) for
    IPv4, its network of `ipv6_prefix` bits (TALLY_IPV6_PREFIX, 64 by default) for IPv6.

    One subscriber is given a whole /64 (often a /56 or /48), so an IPv6 client that
    took a new address per request would otherwise get a fresh budget each time. Logs
    keep `client_ip`, the address itself."""
    return address_key(client_ip(scope, trusted), ipv6_prefix)


def address_key(address: str, ipv6_prefix: int) -> str:
    """`address` as a per-client limit's key (see `client_key`): an IPv4 address as it
    is (also written IPv4-mapped, `::ffff:192.0.2.1`, as a dual-stack socket shows it),
    an IPv6 one as its network `2001:db8:1:2::/64`; anything else as it is."""
    if ":" not in address:  # IPv4 (the hot path parses nothing)
        return address
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if ipv6_prefix < 128:
            return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)


def is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    """`address` is an IP address inside one of the `trusted` networks."""
    return _is_trusted(address, trusted)


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)
