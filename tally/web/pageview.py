"""The page-view endpoints (tally.pageviews): `/count`, which /count.js calls, and
`/count.gif`, the `<noscript>` image.

    GET|POST /count?workspace=blog&page=/about/     204, nothing counted on a refusal
    GET|POST /count?workspace=blog&counter=visits   the counter named as is
    GET      /count.gif?workspace=blog&page=/about/ a 1x1 GIF, never cached

Read top to bottom in `PageViewEndpoint.__call__`: parse, limit (the budget of the
counter's /up: a view is no extra way in), count (an anonymous up, tally.pageviews),
respond. A refusal is the JSON error of the API (its status, `{"code", "message"}`),
also for the image. The body of a POST is never read.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from tally.counters import check_name
from tally.errors import BadRequest, MethodNotAllowed, TallyError
from tally.pageviews import PageViews, page_name, privacy_signal
from tally.web.api import V2Api, origin_source
from tally.web.http import Headers, Scope, Send, header, response_start, send_error

COUNT = b"/count"
PIXEL = b"/count.gif"
# the smallest transparent 1x1 GIF
GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
NO_STORE: Headers = [
    (b"cache-control", b"no-store"),
    (b"access-control-allow-origin", b"*"),
]


def parse_view(query: bytes) -> tuple[str, str]:
    """(workspace, counter name) of a view's query string, or BadRequest."""
    try:
        params = parse_qs(query.decode("utf-8"), keep_blank_values=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the query string is not valid UTF-8 or has too many fields") from None
    for key, values in params.items():
        if len(values) > 1:
            raise BadRequest(f"{key} is given more than once")
    workspace = params.get("workspace", [""])[0]
    page, counter = params.get("page"), params.get("counter")
    if not workspace:
        raise BadRequest("workspace is missing: give workspace=<slug>")
    if (page is None) == (counter is None):
        raise BadRequest("give either page=<path> or counter=<name>")
    # decoded once, by parse_qs: a page's name keeps its percent-escapes (tally.pageviews)
    name = page_name(page[0]) if page is not None else counter[0] if counter else ""
    return check_name("workspace", workspace), check_name("counter", name)


class PageViewEndpoint:
    def __init__(self, api: V2Api) -> None:
        self.api = api
        self.views = PageViews(api.counters)

    async def __call__(self, scope: Scope, send: Send, path: bytes) -> None:
        limits: Headers | None = None
        try:
            method = scope["method"]
            if method != "GET" and (path == PIXEL or method != "POST"):
                use = "GET" if path == PIXEL else "POST or GET"
                raise MethodNotAllowed(f"{method} is not allowed here: use {use}")
            workspace, name = parse_view(scope.get("query_string", b""))
            limits = await self.api.gate.limit(
                scope, (b"up", workspace, name), None, time.monotonic()
            )
            private = privacy_signal(header(scope, b"dnt"), header(scope, b"sec-gpc"))
            await self.views.view(
                workspace, name, origin_source(scope), self.api.visitor(scope), private
            )
        except TallyError as exc:
            await send_error(send, exc, exc.headers or limits)  # JSON, never cached
            return
        headers = [*NO_STORE, *(limits or ())]
        if path == PIXEL:
            headers.append((b"content-type", b"image/gif"))
            await send(response_start(200, headers))
            await send({"type": "http.response.body", "body": GIF})
            return
        await send(response_start(204, headers))
        await send({"type": "http.response.body", "body": b""})
