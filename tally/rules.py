"""A counter's rules, checked in one place for every way in (the dashboard's forms, the
management API, the CLI, import): its floor and ceiling, its allowed origins (and a
workspace's), and its unique-visitor window. The API applies them (tally.counters,
tally.visitors); this module only says whether a value may be saved.

- Bounds: whole numbers within +-2**62 (None: none), the floor not above the ceiling.
- A new or changed bound that the counter's current value already breaks is refused
  (Conflict, nothing saved), so nobody saves a ceiling of 10 on a counter at 50
  believing it holds; a bound that is not changed is not checked again. The store makes
  this check (`check_value`) in the transaction that saves the change, on the value it
  reads there with the row locked, so no count commits between the check and the save
  (Store.change_counter; docs/api.md, "Bounds").
- Origins: tally.origins' canonical form, at most 100, without duplicates.
- The unique window: 1 h to 30 days (tally.visitors), or off (0).

Messages are in the API's style (lowercase, no full stop); the dashboard shows them
as sentences (`sentence`).
"""

from __future__ import annotations

import re

from tally import origins, visitors
from tally.errors import BadRequest, Conflict

MAX_BOUND = 2**62  # the largest floor or ceiling, either sign
_INTEGER = re.compile(r"-?[0-9]{1,19}")


def sentence(message: str) -> str:
    """A message of this module as the dashboard shows it: capitalized, with a full stop."""
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


# bounds --------------------------------------------------------------------------------


def _range_error(what: str, blank: str) -> BadRequest:
    return BadRequest(f"the {what} must be a whole number from -2^62 to 2^62, or {blank}")


def json_int(value: object) -> int | None:
    """A JSON number that is a whole number (`5` or `5.0`, as JSON Schema counts them),
    as an int; None for anything else (a fraction, a string, a boolean, null)."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def check_bounds(floor: int | None, ceiling: int | None) -> None:
    """BadRequest unless the bounds (None: none) are within +-MAX_BOUND and the floor is
    not above the ceiling."""
    for what, bound in (("floor", floor), ("ceiling", ceiling)):
        if bound is not None and abs(bound) > MAX_BOUND:
            raise _range_error(what, "null for none")
    if floor is not None and ceiling is not None and floor > ceiling:
        raise BadRequest(f"the floor ({floor}) is above the ceiling ({ceiling})")


def parse_bound(text: str, what: str, *, blank: str = "empty for none") -> int | None:
    """A floor or ceiling as typed (a form, the CLI): a whole number, or empty (or
    `none`) for none; BadRequest otherwise (`blank` says how to type none)."""
    text = text.strip().replace("\u2212", "-")  # a typographic minus is meant as one
    if not text or text.lower() == "none":
        return None
    if not _INTEGER.fullmatch(text) or abs(int(text)) > MAX_BOUND:
        raise _range_error(what, blank)
    return int(text)


def check_value(
    stored: tuple[int | None, int | None], floor: int | None, ceiling: int | None, value: int
) -> None:
    """New bounds for a counter whose bounds are `stored` (floor, ceiling) and whose value
    (up - down) is `value`: Conflict if a bound that changes is one the value breaks (an
    unchanged bound is not checked)."""
    if floor is not None and floor != stored[0] and value < floor:
        raise Conflict(
            f"the counter's value is {value}, below a floor of {floor}: count it up first, "
            f"or choose a floor of {value} or less; nothing was changed"
        )
    if ceiling is not None and ceiling != stored[1] and value > ceiling:
        raise Conflict(
            f"the counter's value is {value}, above a ceiling of {ceiling}: count it down "
            f"first, or choose a ceiling of {value} or more; nothing was changed"
        )


# origins -------------------------------------------------------------------------------


def check_origins(items: list[str]) -> tuple[str, ...]:
    """Allowed origins given as a list (the API, export files), one per item, canonical
    and without duplicates; BadRequest names the bad one."""
    if any(not item.strip() or "," in item or len(item.split()) > 1 for item in items):
        raise BadRequest("allowed_origins must hold one origin per item")
    return parse_origins(" ".join(items))


def parse_origins(text: str) -> tuple[str, ...]:
    """Allowed origins as typed (one a line in a form, comma-separated on the CLI; any
    whitespace or comma separates), canonical and without duplicates; empty text is no
    list (any origin). BadRequest names the bad one."""
    try:
        return origins.parse_list(text)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


# the unique-visitor window -------------------------------------------------------------


def check_unique(value: object) -> int:
    """`unique` as JSON gives it (the API, export files): a window in seconds from
    3600 to 2592000, true (24 h), false or null (off); the window in seconds (0: off)."""
    if value is None or value is False:
        return 0
    if value is True:
        return visitors.DEFAULT_WINDOW
    seconds = json_int(value)
    if seconds is None:
        raise BadRequest("unique must be a window in seconds, true, false or null")
    try:
        return visitors.check_window(seconds) if seconds else visitors.check_window(-1)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def check_unique_by(value: object) -> bool:
    """`unique_by` as JSON or a form gives it: "address_agent" (a visitor is its address
    and User-Agent) or "address" (its address alone); True for "address"."""
    if value not in visitors.UNIQUE_BY:
        raise BadRequest(f"unique_by must be one of {', '.join(visitors.UNIQUE_BY)}")
    return value == "address"


def unique_by(by_address: bool) -> str:
    """How a counter tells visitors apart, as the API and files show it."""
    return visitors.UNIQUE_BY[1] if by_address else visitors.UNIQUE_BY[0]


def parse_unique(text: str) -> int:
    """A window as typed (a form, the CLI): off, on (24h), or a duration like 36h or 7d;
    the window in seconds (0: off), or BadRequest."""
    try:
        return visitors.parse_window(text or "off")
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def check_page_views(allowed: tuple[str, ...]) -> None:
    """Page counting (tally.pageviews) creates counters for anonymous ups from the
    workspace's allowed origins: it needs some, or BadRequest."""
    if not allowed:
        raise BadRequest(
            "page counting needs the workspace's allowed origins: list the sites whose "
            "pages it counts first"
        )
