"""The authorization matrix (OWASP API1, broken object level authorization): every route of
the app (the V2 API, the management API, V1, exports, the fixed routes and every page of
the dashboard) x every kind of caller x a public, a private and a missing counter, with
the status each must get. One app per backend, in-process.

Callers (the columns, in this order; tests/authz_world.py makes them):

    none     no token and no session          read     Read token of "ws"
    bad      malformed Authorization header   write    Write token of "ws"
    unknown  well-formed token no one issued  admin    Admin token of "ws"
    expired  Admin token of "ws", expired     o_admin  Admin token of "other"
    revoked  Admin token of "ws", revoked     owner    session of an owner of "ws"
    editor   session of an editor of "ws"     viewer   session of a viewer of "ws"
    o_owner  session of the owner of "other"  out      the cookie of a signed-out session

Rows: a route (method, template, query) and, where the route names a counter, one line
per kind of counter ("public", "private", "missing"; "*" where none is named). Requests
carry an empty form (with a valid CSRF token) or `{}`: a caller who may act gets the
form's 400, so a cell shows the authorization decision, not the action. How to read a
few rows:

- V2 (`/v2/...`) reads tokens, never cookies: a session is anonymous there. A private
  counter is a 404 to anyone without a token of "ws", like a missing one; a bad,
  unknown, expired or revoked token is a 401 whatever the counter.
- The management API and exports need an Admin token of the workspace: 401 without,
  403 with a weaker one; another workspace's Admin token is the 404 of a missing
  workspace on the management API, a 403 on exports (which never look the workspace up,
  so neither reveals whether it exists).
- The dashboard reads sessions, never tokens: without a live session every page
  redirects to sign-in (303), except the counter's live stream, a 401 (an EventSource
  would follow the redirect to HTML; an open stream is closed once its status is read).
  A non-member (o_owner) gets 404; a viewer 403 for any change; an editor 403 for the
  workspace's settings and rules, deletion, members and export, and a counter's limits.
  An owner's empty rules form is valid (it clears the rules): 303 back to the page.
- V1 has no tokens and sees only public counters (its 400 is V1's "record not found").

`test_every_route_has_a_row` derives the routes from the app's own tables, so a new route
without a row fails.
"""

from __future__ import annotations

from authz_world import CALLERS, KINDS, app_routes, make_world
from conftest import HarnessFactory

from tally.config import Settings
from tally.web.app import create_app

Row = dict[str, str]

# fmt: off
#                    none bad unk exp rev  R   W   A  oA  own edi vie oOw out
MATRIX: dict[tuple[str, str, str], Row] = {
    ("GET", "/", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 200 200 200 200 303",
    },
    ("GET", "/account", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 200 200 200 200 303",
    },
    ("POST", "/account", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 400 400 400 400 303",
    },
    ("GET", "/count", ""): {  # no workspace nor page given: a 400 for everyone
        "*":        "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
    },
    ("POST", "/count", ""): {
        "*":        "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
    },
    ("GET", "/count.gif", ""): {
        "*":        "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
    },
    ("GET", "/count.js", ""): {
        "*":        "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("GET", "/docs", ""): {
        "*":        "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("GET", "/docs/redoc.standalone.js", ""): {
        "*":        "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("GET", "/export/{workspace}", ""): {
        "*":        "401 401 401 401 401 403 403 200 403 401 401 401 401 401",
    },
    ("GET", "/forgot", ""): {
        "*":        "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("POST", "/forgot", ""): {  # the matrix posts no email address: a 400 for everyone
        "*":        "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
    },
    ("GET", "/healthz", ""): {
        "*":        "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("GET", "/invite/{secret}", ""): {  # an unknown link says so to anyone
        "*":        "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
    },
    ("POST", "/invite/{secret}", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 400 400 400 400 303",
    },
    ("GET", "/login", ""): {
        "*":        "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("POST", "/login", ""): {
        "*":        "401 401 401 401 401 401 401 401 401 401 401 401 401 401",
    },
    ("POST", "/logout", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 303 303 303 303 303",
    },
    ("POST", "/logout-everywhere", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 303 303 303 303 303",
    },
    ("GET", "/metrics", ""): {
        "*":        "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/openapi.json", ""): {
        "*":        "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("GET", "/readyz", ""): {
        "*":        "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("GET", "/reset/{secret}", ""): {
        "*":        "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
    },
    ("POST", "/reset/{secret}", ""): {
        "*":        "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
    },
    ("GET", "/signup", ""): {
        "*":        "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("POST", "/signup", ""): {
        "*":        "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
    },
    ("GET", "/static/{path}", ""): {
        "*":        "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("GET", "/v1/{namespace}/{name}", ""): {
        "public":   "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        "private":  "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
        "missing":  "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
    },
    ("GET", "/v1/{namespace}/{name}/down", ""): {
        "public":   "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        "private":  "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
        "missing":  "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("GET", "/v1/{namespace}/{name}/list", ""): {
        "public":   "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        "private":  "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
        "missing":  "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
    },
    ("GET", "/v1/{namespace}/{name}/set", "?count=5"): {
        "public":   "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        "private":  "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
        "missing":  "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("GET", "/v1/{namespace}/{name}/up", ""): {
        "public":   "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        "private":  "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
        "missing":  "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("GET", "/v2/{workspace}/-/counters", ""): {
        "*":        "401 401 401 401 401 403 403 200 404 401 401 401 401 401",
    },
    ("POST", "/v2/{workspace}/-/counters", ""): {
        "*":        "401 401 401 401 401 403 403 400 404 401 401 401 401 401",
    },
    ("DELETE", "/v2/{workspace}/-/counters/{counter_id}", ""): {
        "public":   "401 401 401 401 401 403 403 200 404 401 401 401 401 401",
        "private":  "401 401 401 401 401 403 403 200 404 401 401 401 401 401",
        "missing":  "401 401 401 401 401 403 403 404 404 401 401 401 401 401",
    },
    ("GET", "/v2/{workspace}/-/counters/{counter_id}", ""): {
        "public":   "401 401 401 401 401 403 403 200 404 401 401 401 401 401",
        "private":  "401 401 401 401 401 403 403 200 404 401 401 401 401 401",
        "missing":  "401 401 401 401 401 403 403 404 404 401 401 401 401 401",
    },
    ("PATCH", "/v2/{workspace}/-/counters/{counter_id}", ""): {
        "public":   "401 401 401 401 401 403 403 400 404 401 401 401 401 401",
        "private":  "401 401 401 401 401 403 403 400 404 401 401 401 401 401",
        "missing":  "401 401 401 401 401 403 403 404 404 401 401 401 401 401",
    },
    ("GET", "/v2/{workspace}/-/settings", ""): {
        "*":        "401 401 401 401 401 403 403 200 404 401 401 401 401 401",
    },
    ("PATCH", "/v2/{workspace}/-/settings", ""): {
        "*":        "401 401 401 401 401 403 403 400 404 401 401 401 401 401",
    },
    ("GET", "/v2/{workspace}/-/tokens", ""): {
        "*":        "401 401 401 401 401 403 403 200 404 401 401 401 401 401",
    },
    ("POST", "/v2/{workspace}/-/tokens", ""): {
        "*":        "401 401 401 401 401 403 403 400 404 401 401 401 401 401",
    },
    ("DELETE", "/v2/{workspace}/-/tokens/{token_id}", ""): {
        "*":        "401 401 401 401 401 403 403 200 404 401 401 401 401 401",
    },
    ("GET", "/v2/{workspace}/-/shares", ""): {
        "*":        "401 401 401 401 401 403 403 200 404 401 401 401 401 401",
    },
    ("POST", "/v2/{workspace}/-/shares", ""): {  # {}: a secret link of the overview
        "*":        "401 401 401 401 401 403 403 201 404 401 401 401 401 401",
    },
    ("DELETE", "/v2/{workspace}/-/shares/{share_id}", ""): {  # no such share
        "*":        "401 401 401 401 401 403 403 404 404 401 401 401 401 401",
    },
    ("GET", "/v2/{workspace}/{name}", ""): {
        "public":   "200 401 401 401 401 200 200 200 200 200 200 200 200 200",
        "private":  "404 401 401 401 401 200 200 200 404 404 404 404 404 404",
        "missing":  "404 401 401 401 401 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/v2/{workspace}/{name}/badge.svg", ""): {
        "public":   "200 401 401 401 401 200 200 200 200 200 200 200 200 200",
        "private":  "404 401 401 401 401 200 200 200 404 404 404 404 404 404",
        "missing":  "404 401 401 401 401 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/v2/{workspace}/{name}/down", ""): {
        "public":   "200 401 401 401 401 200 200 200 200 200 200 200 200 200",
        "private":  "404 401 401 401 401 403 200 200 404 404 404 404 404 404",
        "missing":  "404 401 401 401 401 404 200 200 404 404 404 404 404 404",
    },
    ("GET", "/v2/{workspace}/{name}/down", "?by=5"): {
        "public":   "401 401 401 401 401 403 200 200 403 401 401 401 401 401",
        "private":  "404 401 401 401 401 403 200 200 404 404 404 404 404 404",
        "missing":  "404 401 401 401 401 404 200 200 404 404 404 404 404 404",
    },
    ("GET", "/v2/{workspace}/{name}/reset", ""): {
        "public":   "401 401 401 401 401 403 200 200 403 401 401 401 401 401",
        "private":  "404 401 401 401 401 403 200 200 404 404 404 404 404 404",
        "missing":  "404 401 401 401 401 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/v2/{workspace}/{name}/set", "?up_count=1&down_count=0"): {
        "public":   "401 401 401 401 401 403 403 200 403 401 401 401 401 401",
        "private":  "404 401 401 401 401 403 403 200 404 404 404 404 404 404",
        "missing":  "404 401 401 401 401 404 404 200 404 404 404 404 404 404",
    },
    ("GET", "/v2/{workspace}/{name}/stats", ""): {
        "public":   "200 401 401 401 401 200 200 200 200 200 200 200 200 200",
        "private":  "404 401 401 401 401 200 200 200 404 404 404 404 404 404",
        "missing":  "404 401 401 401 401 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/v2/{workspace}/{name}/stream", ""): {
        "public":   "200 401 401 401 401 200 200 200 200 200 200 200 200 200",
        "private":  "404 401 401 401 401 200 200 200 404 404 404 404 404 404",
        "missing":  "404 401 401 401 401 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/v2/{workspace}/{name}/up", ""): {
        "public":   "200 401 401 401 401 200 200 200 200 200 200 200 200 200",
        "private":  "404 401 401 401 401 403 200 200 404 404 404 404 404 404",
        "missing":  "404 401 401 401 401 404 200 200 404 404 404 404 404 404",
    },
    ("GET", "/v2/{workspace}/{name}/up", "?by=5"): {
        "public":   "401 401 401 401 401 403 200 200 403 401 401 401 401 401",
        "private":  "404 401 401 401 401 403 200 200 404 404 404 404 404 404",
        "missing":  "404 401 401 401 401 404 200 200 404 404 404 404 404 404",
    },
    ("POST", "/verify/resend", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 303 303 303 303 303",
    },
    ("GET", "/verify/{secret}", ""): {
        "*":        "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
    },
    ("POST", "/verify/{secret}/resend", ""): {  # an unknown link names no account
        "*":        "400 400 400 400 400 400 400 400 400 400 400 400 400 400",
    },
    ("GET", "/w/{slug}", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 200 200 200 404 303",
    },
    ("GET", "/w/{slug}/c/{counter_id}", ""): {
        "public":   "303 303 303 303 303 303 303 303 303 200 200 200 404 303",
        "private":  "303 303 303 303 303 303 303 303 303 200 200 200 404 303",
        "missing":  "303 303 303 303 303 303 303 303 303 404 404 404 404 303",
    },
    ("GET", "/w/{slug}/c/{counter_id}/counts", ""): {
        "public":   "303 303 303 303 303 303 303 303 303 200 200 200 404 303",
        "private":  "303 303 303 303 303 303 303 303 303 200 200 200 404 303",
        "missing":  "303 303 303 303 303 303 303 303 303 404 404 404 404 303",
    },
    ("GET", "/w/{slug}/period", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 200 200 200 404 303",
    },
    ("GET", "/w/{slug}/c/{counter_id}/period", ""): {
        "public":   "303 303 303 303 303 303 303 303 303 200 200 200 404 303",
        "private":  "303 303 303 303 303 303 303 303 303 200 200 200 404 303",
        "missing":  "303 303 303 303 303 303 303 303 303 404 404 404 404 303",
    },
    ("GET", "/w/{slug}/c/{counter_id}/data.json", ""): {
        "public":   "303 303 303 303 303 303 303 303 303 200 200 200 404 303",
        "private":  "303 303 303 303 303 303 303 303 303 200 200 200 404 303",
        "missing":  "303 303 303 303 303 303 303 303 303 404 404 404 404 303",
    },
    ("POST", "/w/{slug}/c/{counter_id}/delete", ""): {
        "public":   "303 303 303 303 303 303 303 303 303 303 303 403 404 303",
        "private":  "303 303 303 303 303 303 303 303 303 303 303 403 404 303",
        "missing":  "303 303 303 303 303 303 303 303 303 404 404 403 404 303",
    },
    ("POST", "/w/{slug}/c/{counter_id}/edit", ""): {
        "public":   "303 303 303 303 303 303 303 303 303 303 303 403 404 303",
        "private":  "303 303 303 303 303 303 303 303 303 303 303 403 404 303",
        "missing":  "303 303 303 303 303 303 303 303 303 404 404 403 404 303",
    },
    ("POST", "/w/{slug}/c/{counter_id}/rules", ""): {
        "public":   "303 303 303 303 303 303 303 303 303 303 403 403 404 303",
        "private":  "303 303 303 303 303 303 303 303 303 303 403 403 404 303",
        "missing":  "303 303 303 303 303 303 303 303 303 404 403 403 404 303",
    },
    ("POST", "/w/{slug}/c/{counter_id}/reset", ""): {
        "public":   "303 303 303 303 303 303 303 303 303 303 303 403 404 303",
        "private":  "303 303 303 303 303 303 303 303 303 303 303 403 404 303",
        "missing":  "303 303 303 303 303 303 303 303 303 404 404 403 404 303",
    },
    ("GET", "/w/{slug}/c/{counter_id}/stream", ""): {
        "public":   "401 401 401 401 401 401 401 401 401 200 200 200 404 401",
        "private":  "401 401 401 401 401 401 401 401 401 200 200 200 404 401",
        "missing":  "401 401 401 401 401 401 401 401 401 404 404 404 404 401",
    },
    ("GET", "/w/{slug}/counters/new", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 200 200 403 404 303",
    },
    ("POST", "/w/{slug}/counters/new", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 400 400 403 404 303",
    },
    ("POST", "/w/{slug}/delete", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 400 403 403 404 303",
    },
    ("GET", "/w/{slug}/export", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 200 403 403 404 303",
    },
    ("POST", "/w/{slug}/invites/{invite_id}/cancel", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 303 403 403 404 303",
    },
    ("GET", "/w/{slug}/members", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 200 200 200 404 303",
    },
    ("POST", "/w/{slug}/members", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 400 403 403 404 303",
    },
    ("POST", "/w/{slug}/members/{account_id}", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 303 403 403 404 303",
    },
    ("GET", "/w/{slug}/settings", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 200 403 403 404 303",
    },
    ("POST", "/w/{slug}/settings", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 400 403 403 404 303",
    },
    ("POST", "/w/{slug}/settings/rules", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 303 403 403 404 303",
    },
    ("POST", "/w/{slug}/settings/quota", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 303 403 403 404 303",
    },
    ("POST", "/w/{slug}/settings/pages", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 303 403 403 404 303",
    },
    ("POST", "/w/{slug}/settings/timezone", ""): {  # empty: the server's zone
        "*":        "303 303 303 303 303 303 303 303 303 303 403 403 404 303",
    },
    ("GET", "/w/{slug}/tokens", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 200 200 403 404 303",
    },
    ("POST", "/w/{slug}/tokens", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 400 400 403 404 303",
    },
    ("POST", "/w/{slug}/tokens/{token_id}/revoke", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 303 303 403 404 303",
    },
    ("GET", "/widget.js", ""): {
        "*":        "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("GET", "/v2/{workspace}/-/webhooks", ""): {
        "*":        "401 401 401 401 401 403 403 200 404 401 401 401 401 401",
    },
    ("POST", "/v2/{workspace}/-/webhooks", ""): {
        "*":        "401 401 401 401 401 403 403 400 404 401 401 401 401 401",
    },
    ("GET", "/v2/{workspace}/-/webhooks/{webhook_id}", ""): {
        "*":        "401 401 401 401 401 403 403 404 404 401 401 401 401 401",
    },
    ("PATCH", "/v2/{workspace}/-/webhooks/{webhook_id}", ""): {
        "*":        "401 401 401 401 401 403 403 404 404 401 401 401 401 401",
    },
    ("DELETE", "/v2/{workspace}/-/webhooks/{webhook_id}", ""): {
        "*":        "401 401 401 401 401 403 403 404 404 401 401 401 401 401",
    },
    ("GET", "/v2/{workspace}/-/alerts", ""): {
        "*":        "401 401 401 401 401 403 403 200 404 401 401 401 401 401",
    },
    ("POST", "/v2/{workspace}/-/alerts", ""): {
        "*":        "401 401 401 401 401 403 403 400 404 401 401 401 401 401",
    },
    ("GET", "/v2/{workspace}/-/alerts/{alert_id}", ""): {
        "*":        "401 401 401 401 401 403 403 404 404 401 401 401 401 401",
    },
    ("DELETE", "/v2/{workspace}/-/alerts/{alert_id}", ""): {
        "*":        "401 401 401 401 401 403 403 404 404 401 401 401 401 401",
    },
    ("GET", "/v2/{workspace}/-/deliveries", ""): {
        "*":        "401 401 401 401 401 403 403 200 404 401 401 401 401 401",
    },
    ("GET", "/v2/{workspace}/-/deliveries/{delivery_id}", ""): {
        "*":        "401 401 401 401 401 403 403 404 404 401 401 401 401 401",
    },
    ("POST", "/v2/{workspace}/-/deliveries/{delivery_id}", ""): {
        "*":        "401 401 401 401 401 403 403 404 404 401 401 401 401 401",
    },
    ("GET", "/w/{slug}/alerts", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 200 403 403 404 303",
    },
    ("POST", "/w/{slug}/alerts", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 400 403 403 404 303",
    },
    ("POST", "/w/{slug}/alerts/webhooks/{webhook_id}/delete", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 404 403 403 404 303",
    },
    ("POST", "/w/{slug}/alerts/rules/{rule_id}/delete", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 404 403 403 404 303",
    },
    ("GET", "/w/{slug}/alerts/deliveries/{delivery_id}", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 404 403 403 404 303",
    },
    ("POST", "/w/{slug}/alerts/deliveries/{delivery_id}/resend", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 404 403 403 404 303",
    },
    ("GET", "/w/{slug}/shares", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 200 403 403 404 303",
    },
    ("POST", "/w/{slug}/shares", ""): {  # an empty form: a secret link of the overview
        "*":        "303 303 303 303 303 303 303 303 303 303 403 403 404 303",
    },
    ("POST", "/w/{slug}/shares/{share_id}/revoke", ""): {  # no such share
        "*":        "303 303 303 303 303 303 303 303 303 404 403 403 404 303",
    },
    # shared pages: no account, no token needed or used. "ws" shares its overview and
    # its public counter publicly (tests/authz_world.py); no secret link is known: a
    # random one is a 404, as is every page not shared, whoever asks
    ("GET", "/s/{secret}", ""): {
        "*":        "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/s/{secret}/period", ""): {
        "*":        "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/s/{secret}/counts", ""): {
        "*":        "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/s/{secret}/data.json", ""): {
        "*":        "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/s/{secret}/stream", ""): {
        "*":        "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/p/{slug}", ""): {
        "*":        "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("GET", "/p/{slug}/period", ""): {
        "*":        "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
    },
    ("GET", "/p/{slug}/c/{counter_id}", ""): {
        "public":   "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        "private":  "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
        "missing":  "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/p/{slug}/c/{counter_id}/period", ""): {
        "public":   "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        "private":  "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
        "missing":  "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/p/{slug}/c/{counter_id}/counts", ""): {
        "public":   "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        "private":  "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
        "missing":  "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/p/{slug}/c/{counter_id}/data.json", ""): {
        "public":   "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        "private":  "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
        "missing":  "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/p/{slug}/c/{counter_id}/stream", ""): {
        "public":   "200 200 200 200 200 200 200 200 200 200 200 200 200 200",
        "private":  "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
        "missing":  "404 404 404 404 404 404 404 404 404 404 404 404 404 404",
    },
    ("GET", "/workspaces/new", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 200 200 200 200 303",
    },
    ("POST", "/workspaces/new", ""): {
        "*":        "303 303 303 303 303 303 303 303 303 400 400 400 400 303",
    },
}
# fmt: on


def expected(row: Row) -> dict[tuple[str, str], int]:
    """(kind, caller) -> status of one row."""
    cells: dict[tuple[str, str], int] = {}
    for kind, line in row.items():
        statuses = [int(s) for s in line.split()]
        assert len(statuses) == len(CALLERS), line
        cells.update({(kind, c): s for c, s in zip(CALLERS, statuses, strict=True)})
    return cells


def test_every_route_has_a_row() -> None:
    """Every (method, route) the app serves has a row, and every row is a route; rows
    that name a counter have all three kinds, the others one "*" line."""
    app = create_app(Settings(database_url="sqlite:///unused.db"))
    routes = app_routes(app.routes)
    rows = {(method, template) for method, template, _ in MATRIX}
    assert routes - rows == set(), "routes without a row in MATRIX"
    assert rows - routes == set(), "rows for routes the app does not serve"
    for (_, template, _), row in MATRIX.items():
        names_counter = "{name}" in template or "{counter_id}" in template
        assert tuple(row) == (KINDS if names_counter else ("*",)), template


async def test_authorization_matrix(make_harness: HarnessFactory) -> None:
    """Every cell of MATRIX: the caller gets exactly that status (all cells are run, and
    every mismatch is reported at once); a live session's 303 is never the redirect to
    sign-in (so an owner's 303 is the form's answer, not a session the page ignored)."""
    h = await make_harness(rate_limit=None, v1_rate_limit=None, share_rate_limit=None)
    world = await make_world(h)
    wrong: list[str] = []
    for (method, template, query), row in MATRIX.items():
        for (kind, caller), status in expected(row).items():
            got = await world.send(
                method, template, "public" if kind == "*" else kind, caller, query
            )
            await world.repair()
            if got != status:
                wrong.append(f"{method} {template}{query} [{kind}] {caller}: {got}, not {status}")
    assert not wrong, "\n".join(wrong)
    assert not world.not_signed_in, "sent to sign-in:\n" + "\n".join(world.not_signed_in)
