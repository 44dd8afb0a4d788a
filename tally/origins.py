"""Allowed origins: the web sites from which a counter accepts anonymous counts.

A workspace or a counter may list origins (`https://example.com`, `http://localhost:8080`,
or `https://*.example.com` for every subdomain of example.com). An anonymous `up` or
`down` of a counter with such a list (its own, else its workspace's) must come with an
`Origin` header, or failing that a `Referer`, naming one of them; anything else is
refused (403). Browsers set these headers themselves and scripts cannot change them,
so a page on another site cannot inflate the counter; any other client can send
whatever it likes, so this is no protection against scripts run outside a browser.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# A request's Origin and Referer headers as they came (None: absent); parsed only for a
# counter that has allowed origins, off the hot path of the others
Source = tuple[bytes | None, bytes | None]
NO_SOURCE: Source = (None, None)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
MAX_ORIGINS = 100


def _canonical(scheme: str, host: str, port: int | None) -> str:
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def normalize(text: str) -> str:
    """An origin as configured, in its canonical form; ValueError if it is not one."""
    raw = text.strip()
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} is not an origin") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if (
        scheme not in _DEFAULT_PORTS
        or not _HOST.fullmatch(host)
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ValueError(
            f"{text!r} is not an origin: use scheme://host[:port], e.g. https://example.com "
            "or https://*.example.com"
        )
    return _canonical(scheme, host, port)


def parse_list(text: str) -> tuple[str, ...]:
    """Comma- or space-separated origins, normalized, without duplicates, in order."""
    out: list[str] = []
    for item in text.replace(",", " ").split():
        origin = normalize(item)
        if origin not in out:
            out.append(origin)
    if len(out) > MAX_ORIGINS:
        raise ValueError(f"at most {MAX_ORIGINS} origins")
    return tuple(out)


def request_origin(origin: bytes | None, referer: bytes | None) -> str | None:
    """The origin a request says it comes from: its Origin header, else its Referer's
    scheme, host and port; None if it names none (no header, `null`, garbage)."""
    raw = origin if origin is not None else referer
    if raw is None:
        return None
    try:
        parts = urlsplit(raw.decode("ascii").strip())
        scheme, host, port = parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except (UnicodeDecodeError, ValueError):
        return None
    if scheme not in _DEFAULT_PORTS or not host or host.startswith("*"):
        return None
    return _canonical(scheme, host, port)


def allowed(origin: str | None, origins: tuple[str, ...]) -> bool:
    """Is a request from `origin` allowed by the list `origins` (empty: any)?"""
    if not origins:
        return True
    if origin is None:
        return False
    if origin in origins:
        return True
    scheme, _, rest = origin.partition("://")
    for pattern in origins:
        if "*." in pattern:
            p_scheme, _, p_rest = pattern.partition("://*.")
            # the same scheme and port, and a subdomain of the pattern's host
            if p_scheme == scheme and rest.endswith("." + p_rest):
                return True
    return False
