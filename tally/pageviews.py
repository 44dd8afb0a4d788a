"""Page views for static sites: the page-to-counter mapping and the view itself.

A workspace that counts pages (`Workspace.page_views`, off by default) lets /count.js
(tally/web/static/count.js) and the `<noscript>` image count a view of each of its pages
in a counter named after the page. A view is an anonymous `up` of that counter
(`Counters.count`): the same rate limit, allowed origins, unique-visitor window, bounds,
group commit and live feed; a missing counter is created only from one of the
workspace's allowed origins, within the client's creation budget and the workspace's
counter quota (see tally.counters).

The mapping (docs/api.md, "Page views"): the page's path as a browser sends it
(`location.pathname`: ASCII, anything else percent-encoded), with `?` and its query
string only if asked for, where every `/` becomes U+2215 DIVISION SLASH (not ASCII, so
never in such a path). `/blog/hello/` is the counter `\u2215blog\u2215hello\u2215`
(which shows as the path), and back: replace each U+2215 by `/`. A path typed by hand
is first percent-encoded as a browser would (its spaces, quotes, non-ASCII letters,
...). A name longer than 128 characters is refused: name such a page with
`data-counter`.
"""

from __future__ import annotations

from urllib.parse import quote

from tally import origins
from tally.counters import Counters, CounterView, check_name
from tally.errors import BadRequest, Forbidden
from tally.visitors import Visitor

SLASH = "\u2215"  # what a '/' of the path becomes in the counter's name
# what a browser percent-encodes in a URL's path and in its query (the WHATWG URL
# standard's path and query percent-encode sets), besides controls and non-ASCII
_PATH_ESCAPED = frozenset(' "#<>?`{}')
_QUERY_ESCAPED = frozenset(' "#<>')


def _encode(text: str, escaped: frozenset[str]) -> str:
    if text.isascii() and text.isprintable() and not escaped.intersection(text):
        return text
    return "".join(c if " " < c < "\x7f" and c not in escaped else quote(c, safe="") for c in text)


def page_name(page: str) -> str:
    """The counter name of a page path (`/blog/hello/`, optionally `?query`), or
    BadRequest."""
    if not page.startswith("/"):
        raise BadRequest("the page must be a path beginning with '/'")
    path, _, query = page.partition("?")
    text = _encode(path, _PATH_ESCAPED)
    if query:
        text += "?" + _encode(query, _QUERY_ESCAPED)
    return check_name("counter", text.replace("/", SLASH))


def page_path(name: str) -> str:
    """The page path of a counter named by `page_name` (its inverse)."""
    return name.replace(SLASH, "/")


def privacy_signal(dnt: bytes | None, gpc: bytes | None) -> bool:
    """Does the request say Do-Not-Track (`DNT: 1`) or Global Privacy Control
    (`Sec-GPC: 1`)?"""
    return (dnt is not None and dnt.strip() == b"1") or (gpc is not None and gpc.strip() == b"1")


class PageViews:
    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    async def view(
        self,
        workspace: str,
        name: str,
        source: origins.Source,
        visitor: Visitor,
        private: bool,
    ) -> CounterView | None:
        """Count a view of the page counter `name` (an anonymous up); None if it is not
        counted because the visitor asks not to be tracked (`private`) and the workspace
        honours that. Forbidden if the workspace does not count pages."""
        ws = await self.counters.workspace(workspace)
        if ws is None or not ws.page_views:
            # the same answer for a workspace that does not exist
            raise Forbidden(f"the workspace {workspace!r} does not count page views")
        if private and ws.honour_dnt:
            return None
        return await self.counters.count(workspace, name, None, 1, 0, source, lambda: visitor)
