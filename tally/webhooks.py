"""Webhooks: their secrets, the Standard Webhooks signature, which URLs may receive, and
one delivery.

A request carries `webhook-id` (the firing's event id, the same on every retry),
`webhook-timestamp` (unix seconds of this try) and `webhook-signature`: "v1," followed
by the base64 HMAC-SHA256, keyed with the secret's bytes (the base64 after "whsec_"),
of "{id}.{timestamp}.{body}" (https://www.standardwebhooks.com/).

Receivers (SSRF): http and https URLs only; a host that is or resolves to a loopback,
private, link-local or otherwise non-global address is refused, when saved and again
before each delivery, unless TALLY_WEBHOOK_PRIVATE allows it. Redirects are not
followed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from tally.errors import BadRequest

MAX_URL = 2000
RESPONSE_KEPT = 1000  # characters of a receiver's answer kept in the delivery log
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def check_secret(secret: object) -> str:
    """A secret given by its owner: "whsec_" and the base64 of 24 to 64 bytes."""
    if isinstance(secret, str) and secret.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except ValueError:
            key = b""
        if 24 <= len(key) <= 64:
            return secret
    raise BadRequest('secret must be "whsec_" and the base64 of 24 to 64 random bytes')


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header's value."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{event_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: float = 300) -> bool:
    """What a receiver does: the timestamp is recent and one of the signatures matches."""
    try:
        timestamp = int(headers["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = sign(secret, headers.get("webhook-id", ""), timestamp, body)
    given = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, g) for g in given)


def check_url(url: object, *, allow_private: bool) -> str:
    """A receiver's URL as saved: http(s), with a host, no credentials; a literal
    address must be global unless `allow_private` (names are checked at delivery)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise BadRequest(f"url must be an http or https URL of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadRequest("url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("url must be an http or https URL with a host")
    if parts.username is not None or parts.password is not None:
        raise BadRequest("url must not carry a user name or password")
    if any(ord(ch) <= 32 or ord(ch) == 127 for ch in url):
        raise BadRequest("url must not contain spaces or control characters")
    del port
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return url
    if not allow_private and not address.is_global:
        raise BadRequest(
            "url's address is not a public one: receivers on private addresses need "
            "TALLY_WEBHOOK_PRIVATE on the server"
        )
    return url


async def check_host(url: str, *, allow_private: bool) -> str | None:
    """Before a delivery: why the URL's host may not receive (it resolves to a
    non-global address), or None. The lookup runs off the event loop."""
    if allow_private:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            return f"{host} resolves to {address}, not a public address (TALLY_WEBHOOK_PRIVATE)"
    return None


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int | None  # None: no answer
    latency: float
    error: str
    response: str

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def post(
    client: httpx.AsyncClient, url: str, secret: str, event_id: str, body: bytes
) -> Outcome:
    """POST `body` to `url`, signed; what happened."""
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "Tally-Webhooks",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, event_id, timestamp, body),
    }
    started = time.perf_counter()
    try:
        async with client.stream("POST", url, content=body, headers=headers) as response:
            kept = b""
            async for chunk in response.aiter_bytes():
                kept += chunk
                if len(kept) >= RESPONSE_KEPT:
                    break  # the rest is not read: a receiver cannot make us hold more
            status = response.status_code
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        return Outcome(None, time.perf_counter() - started, error, "")
    text = kept[:RESPONSE_KEPT].decode("utf-8", "replace")
    return Outcome(status, time.perf_counter() - started, "", text)
