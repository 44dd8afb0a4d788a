"""GET /openapi.json, and the API page at /docs (Redoc, vendored, see
scripts/vendor-redoc), with a Content-Security-Policy that allows no inline script."""

from __future__ import annotations

from functools import cache
from importlib import resources

from tally.web.http import Headers, Send, response_start
from tally.web.openapi import document_bytes

CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    b"worker-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
REDOC = "redoc/redoc.standalone.js"
# The bundle draws Redocly's logo from its CDN, which the page's CSP refuses (a console
# error on every visit, and a request to a third party if it were allowed): it is served
# with an empty inline image in its place. The vendored file stays as published; the
# substitution must find the URL exactly once (a new Redoc that moved it fails the tests).
REDOC_LOGO = b'"https://cdn.redoc.ly/redoc/logo-mini.svg"'
NO_LOGO = b'"data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg%27/%3E"'


@cache
def static(name: str) -> bytes:
    """A file of tally/web/static, read once."""
    return (resources.files("tally.web") / "static" / name).read_bytes()


@cache
def redoc_bundle() -> bytes:
    """The vendored Redoc bundle, without its one request to another host."""
    bundle = static(REDOC)
    if bundle.count(REDOC_LOGO) != 1:
        raise RuntimeError(f"{REDOC} does not name Redocly's logo once: check docs.py")
    return bundle.replace(REDOC_LOGO, NO_LOGO)


@cache
def openapi_json() -> bytes:
    return document_bytes()


async def _send(send: Send, body: bytes, content_type: bytes, extra: Headers) -> None:
    headers = [(b"content-type", content_type), (b"x-content-type-options", b"nosniff"), *extra]
    await send(response_start(200, headers))
    await send({"type": "http.response.body", "body": body})


async def send_openapi(send: Send) -> None:
    await _send(
        send,
        openapi_json(),
        b"application/json",
        [(b"access-control-allow-origin", b"*"), (b"cache-control", b"no-cache")],
    )


async def send_page(send: Send) -> None:
    await _send(
        send,
        static("docs.html"),
        b"text/html; charset=utf-8",
        [(b"content-security-policy", CSP), (b"cache-control", b"no-cache")],
    )


async def send_redoc(send: Send) -> None:
    await _send(
        send,
        redoc_bundle(),
        b"text/javascript; charset=utf-8",
        [(b"cache-control", b"public, max-age=86400")],
    )
