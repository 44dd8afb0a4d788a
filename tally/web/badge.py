"""SVG badges in the manner of shields.io: the options, the number, the text width, the SVG.

Text is measured with the advance widths of DejaVu Sans (`badge_font.json`, generated
from the font by tools/badge_font.py), the font the SVG names first; `textLength` then
holds each text to its measured width in whatever font the viewer really has. Every
text that reaches the SVG is XML-escaped.

`render` is a pure function of its arguments (the label, the message, the options; the
font table and the geometry are constants), so `rendered` keeps its result, with the
ETag, per those arguments in a bounded LRU: a hot badge costs a lookup, and a new value
(the message) is a new key, never a stale badge.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from importlib import resources
from typing import Literal
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import orjson

from tally import origins
from tally.errors import BadRequest, StorageError, TallyError
from tally.web.api import Route, V2Api, origin_source
from tally.web.http import Headers, Receive, Scope, Send, none_match, response_start

log = logging.getLogger("tally.web")

Style = Literal["flat", "flat-square", "for-the-badge"]
STYLES: tuple[Style, ...] = ("flat", "flat-square", "for-the-badge")
NUMBERS = ("full", "compact")
MAX_LABEL = 64
# shields.io's named colours
COLOURS = {
    "brightgreen": "#4c1",
    "green": "#97ca00",
    "yellowgreen": "#a4a61d",
    "yellow": "#dfb317",
    "orange": "#fe7d37",
    "red": "#e05d44",
    "blue": "#007ec6",
    "grey": "#555",
    "gray": "#555",
    "lightgrey": "#9f9f9f",
    "lightgray": "#9f9f9f",
    "success": "#4c1",
    "important": "#fe7d37",
    "critical": "#e05d44",
    "informational": "#007ec6",
    "inactive": "#9f9f9f",
}
_HEX = re.compile(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
ERROR_COLOUR = COLOURS["lightgrey"]
# rendered badges kept per process (`rendered`); an entry is under 6 KB (an SVG of at
# most 5.5 KB, for a 128-character name whose characters all escape to the most bytes,
# plus its key and ETag), so 6 MB at most
RENDERED = 1024


@dataclass(frozen=True, slots=True)
class BadgeOptions:
    label: str | None = None  # None: the counter's name
    colour: str = COLOURS["blue"]
    label_colour: str = COLOURS["grey"]
    style: Style = "flat"
    number: str = "full"
    count_up: bool = False


def colour(name: str, value: str) -> str:
    """A named colour or a hex colour (with or without '#') as '#rrggbb' / '#rgb'."""
    named = COLOURS.get(value.lower())
    if named is not None:
        return named
    m = _HEX.fullmatch(value)
    if m is None:
        raise BadRequest(f"invalid {name}: use a name such as blue or a hex colour like 4c1")
    return "#" + m.group(1).lower()


def parse_options(query: bytes) -> BadgeOptions:
    """The badge's query string, or BadRequest naming the bad parameter."""
    try:
        pairs = parse_qsl(query.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("invalid query: not UTF-8") from None
    options: dict[str, object] = {}
    for key, value in pairs:
        if key == "label":
            if len(value) > MAX_LABEL or not value.isprintable():
                raise BadRequest(f"invalid label: at most {MAX_LABEL} printable characters")
            options["label"] = value
        elif key in ("color", "colour"):
            options["colour"] = colour("color", value)
        elif key in ("labelColor", "label_color", "labelColour"):
            options["label_colour"] = colour("labelColor", value)
        elif key == "style":
            if value not in STYLES:
                raise BadRequest("invalid style: use flat, flat-square or for-the-badge")
            options["style"] = value
        elif key == "number":
            if value not in NUMBERS:
                raise BadRequest("invalid number: use full or compact")
            options["number"] = value
        elif key == "count":
            if value != "up":
                raise BadRequest("invalid count: the only value is up")
            options["count_up"] = True
        else:
            raise BadRequest(f"unknown parameter {key[:32]!r}")
    return BadgeOptions(**options)  # type: ignore[arg-type]


def format_number(n: int, number: str = "full") -> str:
    """1234567 -> '1,234,567' (full) or '1.2M' (compact: one decimal below 10, none above)."""
    if number == "full" or -1000 < n < 1000:
        return f"{n:,}"
    sign, rest = ("-", -n) if n < 0 else ("", n)
    for size, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "k")):
        if rest >= size:
            scaled = rest / size
            text = f"{scaled:.1f}" if scaled < 9.95 else f"{scaled:.0f}"
            if text.endswith(".0"):
                text = text[:-2]
            if text == "1000" and suffix != "T":  # 999,999 -> 1000k: say 1M
                bigger = {"k": "M", "M": "B", "B": "T"}[suffix]
                return f"{sign}1{bigger}"
            return f"{sign}{text}{suffix}"
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class _Font:
    units_per_em: int
    widths: dict[str, int]
    fallback: int  # a character the font lacks is drawn by another font: guess an 'M'


@cache
def _font(weight: str) -> _Font:
    raw = orjson.loads(resources.files(__package__).joinpath("badge_font.json").read_bytes())
    widths = {ch: int(w) for w, chars in raw[weight].items() for ch in chars}
    return _Font(int(raw["units_per_em"]), widths, widths["M"])


def text_width(text: str, size: float, *, bold: bool = False, spacing: float = 0.0) -> float:
    """Width in px of `text` at `size` px in DejaVu Sans, plus `spacing` px per character."""
    font = _font("bold" if bold else "regular")
    get, fallback = font.widths.get, font.fallback
    units = sum(get(ch, fallback) for ch in text)
    return units * size / font.units_per_em + spacing * len(text)


# per style: height, font size, horizontal padding, letter spacing, bold message,
# upper-case texts, corner radius, gradient, baseline (tenths of a px)
_GEOMETRY = {
    "flat": (20, 11, 6, 0.0, False, False, 3, True, 140),
    "flat-square": (20, 11, 6, 0.0, False, False, 0, False, 140),
    "for-the-badge": (28, 10, 9, 1.0, True, True, 0, False, 175),
}


def render(label: str, message: str, options: BadgeOptions) -> bytes:
    """The badge's SVG."""
    height, size, pad, spacing, bold, upper, radius, gradient, baseline = _GEOMETRY[options.style]
    if upper:
        label, message = label.upper(), message.upper()
    label_text = round(text_width(label, size, spacing=spacing), 1)
    message_text = round(text_width(message, size, bold=bold, spacing=spacing), 1)
    left = round(label_text + 2 * pad) if label else 0
    right = round(message_text + 2 * pad)
    width = left + right
    title = escape(f"{label}: {message}" if label else message)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title, {chr(34): "&quot;"})}">',
        f"<title>{title}</title>",
    ]
    if gradient:
        parts.append(
            '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" '
            'stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
        )
    parts.append(
        f'<clipPath id="r"><rect width="{width}" height="{height}" rx="{radius}" '
        'fill="#fff"/></clipPath><g clip-path="url(#r)">'
        f'<rect width="{left}" height="{height}" fill="{options.label_colour}"/>'
        f'<rect x="{left}" width="{right}" height="{height}" fill="{options.colour}"/>'
    )
    if gradient:
        parts.append(f'<rect width="{width}" height="{height}" fill="url(#s)"/>')
    parts.append(
        '</g><g fill="#fff" text-anchor="middle" '
        'font-family="DejaVu Sans,Verdana,Geneva,sans-serif" '
        f'text-rendering="geometricPrecision" font-size="{size * 10}">'
    )
    # coordinates are in tenths of a pixel (scale(.1)), as shields does, for crisp text
    if label:
        parts.append(_text(label, left * 5, baseline, label_text, False, gradient))
    parts.append(_text(message, left * 10 + right * 5, baseline, message_text, bold, gradient))
    parts.append("</g></svg>")
    return "".join(parts).encode()


def _text(text: str, x: float, y: int, width: float, bold: bool, shadow: bool) -> str:
    # textLength spreads the glyphs over the measured width, letter spacing included
    # (a letter-spacing attribute as well would add it twice in some renderers)
    attrs = f'transform="scale(.1)" textLength="{round(width * 10)}"'
    if bold:
        attrs += ' font-weight="bold"'
    safe = escape(text)
    out = ""
    if shadow:
        out = (
            f'<text aria-hidden="true" x="{x:g}" y="{y + 10}" fill="#010101" '
            f'fill-opacity=".3" {attrs}>{safe}</text>'
        )
    return out + f'<text x="{x:g}" y="{y}" {attrs}>{safe}</text>'


def etag(svg: bytes) -> bytes:
    return b'"' + hashlib.blake2b(svg, digest_size=12).hexdigest().encode() + b'"'


@lru_cache(maxsize=RENDERED)
def rendered(label: str, message: str, options: BadgeOptions) -> tuple[bytes, bytes]:
    """`render`'s SVG and its ETag, kept per (label, message, options): every input of
    `render`, so two different badges never share an entry."""
    svg = render(label, message, options)
    return svg, etag(svg)


def error_message(exc: TallyError) -> str:
    """A few words for an error badge."""
    if isinstance(exc, BadRequest):
        return exc.message.split(":", 1)[0][:48]
    return _ERROR_WORDS.get(exc.status, "error")


_ERROR_WORDS = {
    401: "invalid token",
    403: "forbidden",
    404: "not found",
    409: "at its bound",
    429: "rate limited",
    503: "unavailable",
}
SVG_HEADERS: Headers = [
    (b"content-type", b"image/svg+xml; charset=utf-8"),
    (b"cache-control", b"no-cache, max-age=0"),
    (b"access-control-allow-origin", b"*"),
    (b"x-content-type-options", b"nosniff"),
    # an SVG opened on its own is a document: it may not load or run anything
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"),
]


class BadgeEndpoint:
    """GET /v2/{workspace}/{name}/badge.svg[?count=up&label=..&color=..]: parse,
    authenticate, limit, apply (get, or up with count=up), render. Same rules as get and
    up; an error is a badge too, with the error's status."""

    def __init__(self, api: V2Api) -> None:
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send, route: Route) -> None:
        del receive
        _, workspace, name = route
        label, options = name, BadgeOptions()
        status, limits = 200, None
        try:
            options = parse_options(scope.get("query_string", b""))
            label = name if options.label is None else options.label
            # count=up spends the budget of /up: counting through the badge is not extra
            key = (b"up" if options.count_up else b"badge.svg", workspace, name)
            now = time.monotonic()
            token, limits = await self.api.gate.admit(scope, key, now)
            counters = self.api.counters
            if options.count_up:
                # like up: a count without a token of the workspace is held to the
                # counter's allowed origins (Origin, else Referer)
                own = token is not None and token.workspace_slug == workspace
                source = origins.NO_SOURCE if own else origin_source(scope)
                view = await counters.count(
                    workspace, name, token, 1, 0, source, lambda: self.api.visitor(scope)
                )
            else:
                view = await counters.get(workspace, name, token)
            value = format_number(view.up_count - view.down_count, options.number)
            svg, tag = rendered(label, value, options)
        except TallyError as exc:
            limits = exc.headers or limits  # a refused token or budget carries its own
            status = exc.status
            svg, tag = rendered(label, error_message(exc), replace(options, colour=ERROR_COLOUR))
        except StorageError as exc:
            log.warning("storage error on a badge: %s", exc)
            status = 503
            svg, tag = rendered(label, "unavailable", replace(options, colour=ERROR_COLOUR))
        headers = [*SVG_HEADERS, (b"etag", tag), *(limits or ())]
        if status == 503:
            headers.append((b"retry-after", b"1"))
        if status == 200 and none_match(scope, tag):
            await send(response_start(304, headers))
            await send({"type": "http.response.body", "body": b""})
            return
        await send(response_start(status, headers))
        await send({"type": "http.response.body", "body": svg})
