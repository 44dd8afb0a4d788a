"""Whole numbers from outside (a path, a query string, a form field), read one way
everywhere: ASCII digits only, within the caller's bounds, and never beyond a signed
64-bit integer, which is what SQLite's INTEGER and PostgreSQL's BIGINT hold.

A larger number handed to a store fails deep in its driver (SQLite's OverflowError was
a 500 on the dashboard's pages), and `int()` alone takes more than digits: "٣", "1_000",
" 7", "-0". Callers turn None into their own answer: a 404 for an id in a path (no such
thing), a 400 for a query or form value (docs/security.md, "Limits on what a client sends").
"""

from __future__ import annotations

import re

INT64_MAX = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")  # str patterns: [0-9] is ASCII only, unlike \d


def whole_number(text: str | bytes, low: int = 0, high: int = INT64_MAX) -> int | None:
    """`text` as an int if it is written in ASCII digits alone (no sign, no spaces) and
    lies within low..high (and 0..INT64_MAX); None otherwise."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    if _DIGITS.fullmatch(text) is None:
        return None
    value = int(text)
    return value if max(low, 0) <= value <= min(high, INT64_MAX) else None


def row_id(text: str | bytes) -> int | None:
    """An id as the stores number rows (1 to INT64_MAX), or None."""
    return whole_number(text, 1)
