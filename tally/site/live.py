"""GET /w/{slug}/c/{counter_id}/stream: the counter page's live counts, the API's stream
(tally/web/stream.py) for a signed-in member instead of a token holder.

The page's EventSource sends the session cookie (same origin), so no token is ever put
in the page. Access is checked as for the page (a member of the workspace, any role)
when the stream opens, and again at every heartbeat (TALLY_STREAM_HEARTBEAT) and at
most every `RECHECK` seconds (or heartbeat, if shorter) before a read for a change: a
stream ends, with its `end` event, when its session is signed out or expires, when the
member leaves the workspace, or when the counter is deleted. The limits on open streams
(per client key, per node) are the API's.
"""

from __future__ import annotations

import time

from starlette.requests import Request

from tally import workspaces
from tally.errors import Unauthorized
from tally.models import Counter
from tally.site import security
from tally.site.counters import load_counter
from tally.site.pages import client_key, site, visitor
from tally.web.http import Headers, Receive, Scope, Send

RECHECK = 5.0  # seconds between two checks of the session and membership of a stream
HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
]


class CounterStream:
    """The route's ASGI endpoint (a class, so Starlette hands it the raw request: the
    response is the stream, sent as it goes)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        session = await visitor(request)
        if session is None:
            # no redirect to the sign-in page: EventSource would follow it to HTML
            raise Unauthorized("Sign in again to see the live counts.")
        s = site(request)
        ws, role = await workspaces.membership(
            s.store, session.account, request.path_params["slug"]
        )
        workspaces.require_role(role, "view")
        counter = await load_counter(request, ws)
        secret = request.cookies.get(security.SESSION_COOKIE)
        checked_at = time.monotonic()

        recheck = min(RECHECK, s.streams.heartbeat)

        async def check(heartbeat: bool) -> Counter:
            nonlocal checked_at
            if heartbeat or time.monotonic() - checked_at >= recheck:
                current = await s.accounts.session(secret)
                if current is None:
                    raise Unauthorized("the session ended")
                _, role = await workspaces.membership(s.store, current.account, ws.slug)
                workspaces.require_role(role, "view")
                checked_at = time.monotonic()
            return counter  # a deleted one ends the stream at its read (NotFound)

        await s.streams.serve(
            receive,
            send,
            client_key(request),
            counter.id,
            check,
            HEADERS,
            f"{ws.slug}/{counter.name} (dashboard)",
        )
