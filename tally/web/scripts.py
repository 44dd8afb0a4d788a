"""The scripts a web page includes: /count.js (page views) and /widget.js (the live
`<tally-counter>`), from tally/web/static.

Each is served at two URLs: `/count.js`, cached a day (a new Tally version reaches pages
within it), and `/count.js?v=<version>`, the same bytes cached for a year as immutable,
where the version is a hash of the script: the URL to pin with Subresource Integrity
(`integrity`, shown by the dashboard's settings page and `Script.integrity`). A `v`
that is not the current version is a 404, never other bytes. Both answer with CORS
(`Access-Control-Allow-Origin: *`, which `crossorigin="anonymous"` needs), an ETag, and
gzip when the client takes it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from urllib.parse import parse_qs

from tally.errors import NotFound
from tally.web.http import Headers, Scope, Send, header, none_match, response_start

DAY = b"public, max-age=86400"
YEAR = b"public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class Script:
    path: str  # /count.js
    body: bytes
    gzipped: bytes

    @property
    def version(self) -> str:
        return hashlib.sha256(self.body).hexdigest()[:16]

    @property
    def integrity(self) -> str:
        """The `integrity` attribute of a <script> of this script (SHA-384)."""
        return "sha384-" + base64.b64encode(hashlib.sha384(self.body).digest()).decode()

    @property
    def versioned(self) -> str:
        """Its immutable URL path: /count.js?v=<version>."""
        return f"{self.path}?v={self.version}"


@cache
def script(name: str) -> Script:
    """The script of tally/web/static/`name` (count.js, widget.js)."""
    body = resources.files("tally.web").joinpath("static", name).read_bytes()
    return Script("/" + name, body, gzip.compress(body, 9, mtime=0))


async def send_script(scope: Scope, send: Send, name: str) -> None:
    s = script(name)
    query = scope.get("query_string", b"").decode("latin-1")
    wanted = parse_qs(query).get("v") if query else None
    if wanted is not None and wanted != [s.version]:
        raise NotFound(f"no such version of {s.path}: the current one is {s.versioned}")
    tag = b'"' + s.version.encode() + b'"'
    headers: Headers = [
        (b"content-type", b"text/javascript; charset=utf-8"),
        (b"cache-control", YEAR if wanted else DAY),
        (b"access-control-allow-origin", b"*"),
        (b"x-content-type-options", b"nosniff"),
        (b"vary", b"Accept-Encoding"),
        (b"etag", tag),
    ]
    if none_match(scope, tag):
        await send(response_start(304, headers))
        await send({"type": "http.response.body", "body": b""})
        return
    body = s.body
    if b"gzip" in (header(scope, b"accept-encoding") or b""):
        body = s.gzipped
        headers.append((b"content-encoding", b"gzip"))
    headers.append((b"content-length", b"%d" % len(body)))
    await send(response_start(200, headers))
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
