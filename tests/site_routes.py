"""The website's routes, walked by the tests of numbers from outside (tests/test_site_inputs.py
in-process, tests/e2e/test_abuse_numbers.py on real servers): every route of the site's
route table, and the bad numbers each parameter gets."""

from __future__ import annotations

import re
from urllib.parse import quote

from starlette.routing import Route

from tally.numbers import INT64_MAX
from tally.site.app import ROUTES

# out of range, negative, zero, and not a number (as int() would have taken some of them)
BAD_NUMBERS = [
    "0",
    "-1",
    "-9223372036854775808",
    str(INT64_MAX + 1),
    str(2**64),
    "9" * 25,
    "9" * 5000,
    "abc",
    "1.5",
    "1e3",
    "0x10",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: int() reads it as 3
    "1_0",
    " 1",
    "+1",
    "",
]
QUERY_NAMES = ["page", "q", "sort", "dir", "next", "invite"]
FORM = {
    "confirm": "x",
    "action": "remove",
    "role": "owner",
    "floor": "9" * 30,
    "ceiling": "-" + "9" * 30,
    "unique": "9" * 30 + "d",
    "expires": "9" * 30,
    "permission": "read",
    "name": "n",
    "email": "e@example.com",
}
PARAM = re.compile(r"\{([a-z_]+)(?::[a-z]+)?\}")
SIGN_OUT = {"/logout", "/logout-everywhere"}  # walked last: they end the session


def routes() -> list[tuple[str, str, list[str]]]:
    """(method, path template, its parameters but the workspace's slug) of every route."""
    out = []
    for route in ROUTES:
        if not isinstance(route, Route):
            continue  # the static files' mount
        if route.path in SIGN_OUT:
            continue
        params = [p for p in PARAM.findall(route.path) if p != "slug"]
        for method in sorted((route.methods or set()) - {"HEAD"}):
            out.append((method, route.path, params))
    return out


def fill(template: str, value: str) -> str:
    """The path of `template` in workspace "ann", every other parameter `value`."""
    path = template.replace("{slug}", "ann")
    return PARAM.sub(lambda m: quote(value, safe=""), path)
