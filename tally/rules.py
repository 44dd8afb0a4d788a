"""A counter's rules as people type them in the dashboard: its floor and ceiling, and the
allowed origins of a counter or a workspace. Validated as the CLI and the store take
them (tally.origins for the origins; bounds within +-2**62, the floor not above the
ceiling), with messages meant for a form. The API applies the rules (tally.counters).

One decision is the dashboard's own: a *new* bound that the counter's current value
already breaks is refused (Conflict), so nobody saves a ceiling of 10 on a counter at
50 believing it holds. The API keeps accepting changes towards the allowed range from
such a counter (a bound set while the value was outside it, from the CLI, or by a
change that committed between this check and the save)."""

from __future__ import annotations

import re

from tally import origins as origin_rules
from tally.errors import BadRequest, Conflict
from tally.models import Counter

MAX_BOUND = 2**62
_INTEGER = re.compile(r"-?[0-9]{1,19}")


def check_origins(text: str) -> tuple[str, ...]:
    """Origins typed one a line (commas and spaces separate them too), canonical and
    without duplicates; empty text is no list (any origin). BadRequest names the bad one."""
    try:
        return origin_rules.parse_list(text)
    except ValueError as exc:
        message = str(exc)
        raise BadRequest(message[0].upper() + message[1:] + ".") from None


def check_bound(text: str, what: str) -> int | None:
    """A floor or ceiling typed in a form: a whole number, or empty for none."""
    text = text.strip().replace("\u2212", "-")  # a typographic minus is meant as one
    if not text:
        return None
    if not _INTEGER.fullmatch(text) or abs(int(text)) > MAX_BOUND:
        raise BadRequest(
            f"The {what} must be a whole number between -2^62 and 2^62, or empty for none."
        )
    return int(text)


def check_bounds(counter: Counter, floor: int | None, ceiling: int | None, value: int) -> None:
    """New bounds for `counter`, whose value (up - down) is `value` now: BadRequest if the
    floor is above the ceiling, Conflict if a bound that changes is one the value breaks."""
    if floor is not None and ceiling is not None and floor > ceiling:
        raise BadRequest(f"The floor ({floor}) is above the ceiling ({ceiling}).")
    if floor is not None and floor != counter.floor and value < floor:
        raise Conflict(
            f"The counter's value is {value}, below a floor of {floor}: count it up first, "
            f"or choose a floor of {value} or less."
        )
    if ceiling is not None and ceiling != counter.ceiling and value > ceiling:
        raise Conflict(
            f"The counter's value is {value}, above a ceiling of {ceiling}: count it down "
            f"first, or choose a ceiling of {value} or more."
        )
