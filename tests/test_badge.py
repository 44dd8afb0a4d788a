"""Badges: GET /v2/{workspace}/{name}/badge.svg, its options, its rules and its SVG."""

from __future__ import annotations

import itertools
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import Harness, HarnessFactory
from hypothesis import given
from hypothesis import strategies as st
from test_permissions import ACTIONS, MISSING, PRIVATE, PUBLIC, SEED, make_world

from tally.config import RateLimit
from tally.counters import MAX_NAME
from tally.errors import BadRequest
from tally.models import CounterChange, Permission
from tally.web.badge import (
    COLOURS,
    ERROR_COLOUR,
    MAX_LABEL,
    NUMBERS,
    RENDERED,
    STYLES,
    BadgeOptions,
    etag,
    format_number,
    parse_options,
    render,
    rendered,
    text_width,
)

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "docs" / "badge-example.svg"
SVG = "{http://www.w3.org/2000/svg}"


def texts(svg: bytes | str) -> list[str]:
    """The visible texts of a badge (the shadow copies left out)."""
    root = ET.fromstring(svg)
    return [t.text or "" for t in root.iter(f"{SVG}text") if t.get("aria-hidden") != "true"]


# the parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "full", "compact"),
    [
        (0, "0", "0"),
        (999, "999", "999"),
        (1000, "1,000", "1k"),
        (1250, "1,250", "1.2k"),
        (12_345, "12,345", "12k"),
        (999_999, "999,999", "1M"),
        (1_500_000, "1,500,000", "1.5M"),
        (2_000_000_000, "2,000,000,000", "2B"),
        (-2500, "-2,500", "-2.5k"),
    ],
)
def test_numbers(n: int, full: str, compact: str) -> None:
    """Numbers have thousands separators, or the compact 1.2k form."""
    assert format_number(n, "full") == full
    assert format_number(n, "compact") == compact


def test_font_table_is_generated_from_the_font() -> None:
    """badge_font.json is exactly what tools/badge_font.py reads from DejaVu Sans."""
    tool = ROOT / "tools" / "badge_font.py"
    result = subprocess.run(
        [sys.executable, str(tool), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_text_width_follows_the_font() -> None:
    """Widths come from the advance widths: 'W' is wider than 'i', bold wider than regular,
    and a width is the sum of its characters'."""
    assert text_width("W", 11) > text_width("i", 11)
    assert text_width("hits", 11, bold=True) > text_width("hits", 11)
    assert text_width("ab", 11) == pytest.approx(text_width("a", 11) + text_width("b", 11))
    # DejaVu Sans: '0' advances 1303 units of 2048
    assert text_width("0", 11) == pytest.approx(1303 * 11 / 2048)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (b"color=notacolour", "invalid color"),
        (b"labelColor=%23ggg", "invalid labelColor"),
        (b"style=round", "invalid style"),
        (b"number=roman", "invalid number"),
        (b"count=down", "invalid count"),
        (b"label=" + b"x" * 65, "invalid label"),
        (b"label=a%00b", "invalid label"),
        (b"size=3", "unknown parameter"),
        (b"label=%ff", "invalid query"),
    ],
)
def test_bad_options(query: bytes, message: str) -> None:
    """Each bad parameter is named in the error."""
    with pytest.raises(BadRequest, match=message):
        parse_options(query)


def test_options() -> None:
    """Colours by name or hex, with or without '#'; the style; compact numbers; count=up."""
    o = parse_options(b"color=red&labelColor=%23ABC&style=for-the-badge&number=compact&count=up")
    assert o == BadgeOptions(None, "#e05d44", "#abc", "for-the-badge", "compact", True)
    assert parse_options(b"color=4c1fff&label=").colour == "#4c1fff"
    assert parse_options(b"label=").label == ""


@pytest.mark.parametrize("style", ["flat", "flat-square", "for-the-badge"])
def test_text_is_escaped(style: str) -> None:
    """Markup in a label or name stays text: the SVG parses and shows it verbatim."""
    evil = '<script>alert("x")</script>&"\''
    svg = render(evil, "12", replace(BadgeOptions(), style=style))  # type: ignore[arg-type]
    assert b"<script" not in svg
    shown = texts(svg)
    expected = evil.upper() if style == "for-the-badge" else evil
    assert shown == [expected, "12"]


def test_width_grows_with_the_text() -> None:
    """The badge is as wide as its texts plus padding."""
    narrow = ET.fromstring(render("a", "1", BadgeOptions()))
    wide = ET.fromstring(render("a much longer label", "1,234,567", BadgeOptions()))
    assert int(wide.get("width") or 0) > int(narrow.get("width") or 0) + 100


def test_example_in_the_readme_is_current() -> None:
    """docs/badge-example.svg (shown in the README) is what Tally renders today."""
    svg = render("views", format_number(12_345, "full"), BadgeOptions())
    assert EXAMPLE.read_bytes() == svg + b"\n"
    assert "docs/badge-example.svg" in (ROOT / "README.md").read_text()


# the render cache ---------------------------------------------------------------------

# what a query can say: each parameter absent or one of its accepted spellings
_colours = st.sampled_from(sorted(COLOURS)) | st.from_regex(r"%23|", fullmatch=True).flatmap(
    lambda hash_: st.from_regex(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}", fullmatch=True).map(
        lambda hex_: hash_ + hex_
    )
)
_labels = st.text(st.characters(codec="utf-8").filter(str.isprintable), max_size=MAX_LABEL)
_params = st.fixed_dictionaries(
    {},
    optional={
        "label": _labels,
        "color": _colours,
        "labelColor": _colours,
        "style": st.sampled_from(STYLES),
        "number": st.sampled_from(NUMBERS),
        "count": st.just("up"),
    },
)
_values = st.integers(-(10**15), 10**15) | st.integers(-1100, 1100)


def _query(params: dict[str, str]) -> bytes:
    # percent-encode the label; a colour's '#' is already spelt %23
    encoded = {k: quote(v, safe="%") if k == "label" else v for k, v in params.items()}
    return "&".join(f"{k}={v}" for k, v in encoded.items()).encode()


@given(
    st.lists(_labels.filter(bool), min_size=1, max_size=2),
    st.lists(_params, min_size=1, max_size=4),
    st.lists(_values, min_size=1, max_size=2),
)
def test_a_cached_badge_is_a_fresh_render(
    names: list[str], queries: list[dict[str, str]], values: list[int]
) -> None:
    """For every combination of counter names, query parameters and values (so that
    badges alike in all but one input meet), and their error badges, the cache answers
    exactly what rendering anew gives: its key never lets two different badges share an
    entry."""
    calls = []
    for name, params, value in itertools.product(names, queries, values):
        options = parse_options(_query(params))
        label = name if options.label is None else options.label
        calls.append((label, format_number(value, options.number), options))
        calls.append((label, "not found", replace(options, colour=ERROR_COLOUR)))
    for call in calls:  # fill the cache with all of them first
        rendered(*call)
    for call in calls:
        svg, tag = rendered(*call)
        fresh = render(*call)
        assert (svg, tag) == (fresh, etag(fresh))


def test_the_render_cache_is_bounded() -> None:
    """The cache keeps the last RENDERED badges and drops the least recently used."""
    rendered.cache_clear()
    for n in range(RENDERED + 10):
        rendered("views", str(n), BadgeOptions())
    assert rendered.cache_info().currsize == RENDERED
    hits, misses = rendered.cache_info().hits, rendered.cache_info().misses
    rendered("views", str(RENDERED + 9), BadgeOptions())  # the newest: kept
    assert rendered.cache_info().hits == hits + 1
    rendered("views", "0", BadgeOptions())  # the oldest: dropped, rendered again
    assert rendered.cache_info().misses == misses + 1


@pytest.mark.parametrize("style", STYLES)
def test_a_badge_is_small_enough_for_the_stated_bound(style: str) -> None:
    """The largest badge (a name of MAX_NAME characters that each escape or upper-case to
    the most bytes, the longest error words) is under 5.5 KB: with its key and ETag an
    entry is under 6 KB, and the cache's RENDERED entries hold at most 6 MB, as
    docs/api.md says."""
    options = replace(BadgeOptions(), style=style)  # type: ignore[arg-type]
    worst = max(
        len(render(ch * MAX_NAME, ch * 48, options)) for ch in ("&", '"', "\u1ff7", "\ufb03")
    )
    assert worst < 5.5 * 1024


# the endpoint -------------------------------------------------------------------------


async def seeded(h: Harness, private: bool = False) -> str:
    """ws/c at SEED; an Admin token of ws."""
    ws = await h.workspace("ws")
    token = await h.token(ws, Permission.ADMIN)
    await h.counter(ws, "c", private=private)
    for action, times in (("up", SEED[0]), ("down", SEED[1])):
        for _ in range(times):
            assert (await h.get(f"/v2/ws/c/{action}", token)).status_code == 200
    return token


async def test_badge_shows_the_value(harness: Harness) -> None:
    """The badge shows the name and the value (up - down), as SVG that is never cached."""
    await seeded(harness)
    r = await harness.get("/v2/ws/c/badge.svg")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/svg+xml; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache, max-age=0"
    assert r.headers["etag"].startswith('"')
    assert "x-ratelimit-remaining" in r.headers
    assert "x-request-id" in r.headers
    assert texts(r.content) == ["c", "1"]


async def test_badge_options_reach_the_svg(harness: Harness) -> None:
    """label, color, labelColor and style shape the SVG."""
    await seeded(harness)
    r = await harness.get(
        "/v2/ws/c/badge.svg?label=views&color=red&labelColor=000&style=flat-square"
    )
    assert texts(r.content) == ["views", "1"]
    fills = [rect.get("fill") for rect in ET.fromstring(r.content).iter(f"{SVG}rect")]
    assert fills[1:3] == ["#000", "#e05d44"]  # after the clip path's


async def test_count_up_counts_and_renders(harness: Harness) -> None:
    """count=up counts once per request and shows the value after it."""
    await seeded(harness)
    for expected in ("2", "3"):
        r = await harness.get("/v2/ws/c/badge.svg?count=up")
        assert r.status_code == 200
        assert texts(r.content) == ["c", expected]
    counter = await harness.store.read_counter("ws", "c")
    assert counter is not None
    assert (counter.up_count, counter.down_count) == (SEED[0] + 2, SEED[1])


async def test_count_up_shares_the_budget_of_up(make_harness: HarnessFactory) -> None:
    """Counting through the badge spends the /up budget: no extra counts per minute."""
    h = await make_harness(rate_limit=RateLimit(2, 60.0))
    await h.counter(await h.workspace("ws"), "c")
    assert (await h.get("/v2/ws/c/up")).status_code == 200
    assert (await h.get("/v2/ws/c/badge.svg?count=up")).status_code == 200
    r = await h.get("/v2/ws/c/badge.svg?count=up")
    assert r.status_code == 429
    assert "retry-after" in r.headers
    assert texts(r.content) == ["c", "rate limited"]
    counter = await h.store.read_counter("ws", "c")
    assert counter is not None
    assert counter.up_count == 2


async def test_a_hot_badge_is_cached_and_never_stale(harness: Harness) -> None:
    """The same badge again is a cache hit; after a count, the badge shows the new value."""
    token = await seeded(harness)
    assert texts((await harness.get("/v2/ws/c/badge.svg")).content) == ["c", "1"]
    hits = rendered.cache_info().hits
    assert texts((await harness.get("/v2/ws/c/badge.svg")).content) == ["c", "1"]
    assert rendered.cache_info().hits == hits + 1
    assert (await harness.get("/v2/ws/c/up", token)).status_code == 200
    assert texts((await harness.get("/v2/ws/c/badge.svg")).content) == ["c", "2"]


async def test_etag_gives_304(harness: Harness) -> None:
    """A client that has the current badge gets 304; after a change, the new badge."""
    token = await seeded(harness)
    first = await harness.get("/v2/ws/c/badge.svg")
    tag = first.headers["etag"]
    again = await harness.client.get("/v2/ws/c/badge.svg", headers={"If-None-Match": tag})
    assert again.status_code == 304
    assert again.content == b""
    assert (await harness.get("/v2/ws/c/up", token)).status_code == 200
    changed = await harness.client.get("/v2/ws/c/badge.svg", headers={"If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != tag


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [
        ("{tag}", 304),
        ("W/{tag}", 304),  # weak comparison: W/ does not matter for If-None-Match
        ('"other", {tag}', 304),
        ('"other",W/{tag} , "more"', 304),
        ("*", 304),
        (' "other" ', 200),
        ('W/"other"', 200),
        ("", 200),
        ("garbage", 200),
    ],
)
async def test_if_none_match_per_rfc_9110(
    harness: Harness, if_none_match: str, status: int
) -> None:
    """If-None-Match is a list of entity tags, or `*`, compared weakly (RFC 9110 13.1.2):
    a 304 whenever it names the current badge; several header lines form one list."""
    await seeded(harness)
    tag = (await harness.get("/v2/ws/c/badge.svg")).headers["etag"]
    value = if_none_match.format(tag=tag)
    r = await harness.client.get("/v2/ws/c/badge.svg", headers={"If-None-Match": value})
    assert r.status_code == status
    assert r.headers["etag"] == tag
    lines = [("If-None-Match", '"other"'), ("If-None-Match", tag)]
    assert (await harness.client.get("/v2/ws/c/badge.svg", headers=lines)).status_code == 304


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("color=%3Cscript%3E", "invalid color"),
        ("style=3d", "invalid style"),
        ("count=twice", "invalid count"),
        ("nope=1", "unknown parameter 'nope'"),
    ],
)
async def test_bad_parameters_are_an_error_badge(harness: Harness, query: str, words: str) -> None:
    """A bad parameter is a 400 badge that says which, and counts nothing."""
    await seeded(harness)
    r = await harness.get(f"/v2/ws/c/badge.svg?{query}&count=up")
    assert r.status_code == 400
    assert r.headers["content-type"] == "image/svg+xml; charset=utf-8"
    assert texts(r.content) == ["c", words]
    counter = await harness.store.read_counter("ws", "c")
    assert counter is not None
    assert counter.up_count == SEED[0]


async def test_bad_name_and_method(harness: Harness) -> None:
    """A bad counter name is a JSON 400 like every route; POST is 405."""
    r = await harness.get("/v2/ws/%00/badge.svg")
    assert r.status_code == 400
    r = await harness.client.post("/v2/ws/c/badge.svg")
    assert r.status_code == 405


async def test_label_injection_is_escaped(harness: Harness) -> None:
    """A label full of markup is shown as text, never as SVG."""
    await seeded(harness)
    r = await harness.get("/v2/ws/c/badge.svg?label=%3C/text%3E%3Cscript%3Ealert(1)%3C/script%3E")
    assert r.status_code == 200
    assert b"<script" not in r.content
    assert texts(r.content) == ["</text><script>alert(1)</script>", "1"]


def badge_matrix() -> list[object]:
    """(kind, caller, count, status): badge follows get's column, count=up follows up's."""
    get, up = ACTIONS.index("get"), ACTIONS.index("up")
    return [
        pytest.param(kind, caller, count, row[up if count else get], id=f"{kind}-{caller}-{count}")
        for kind, table in (("public", PUBLIC), ("private", PRIVATE), ("missing", MISSING))
        for caller, row in table.items()
        for count in (False, True)
    ]


@pytest.mark.parametrize(("kind", "caller", "count", "status"), badge_matrix())
async def test_permission_matrix(
    harness: Harness, kind: str, caller: str, count: bool, status: int
) -> None:
    """Badges follow the rules of get, and with count=up those of up; a refused badge
    counts nothing and shows why."""
    world = await make_world(harness, kind)
    before = await world.counts()
    path = "/v2/ws/c/badge.svg" + ("?count=up" if count else "")
    r = await harness.client.get(path, headers=world.header(caller))
    assert r.status_code == status, r.text
    after = await world.counts()
    if status != 200:
        assert after == before
        assert texts(r.content)[1] in ("not found", "forbidden", "invalid token")
        return
    expected_up = (0 if before is None else before[0]) + (1 if count else 0)
    assert after is not None
    assert after[0] == expected_up
    assert texts(r.content)[1] == str(after[0] - after[1])


async def test_private_badge_hides_existence(harness: Harness) -> None:
    """Without a token, a private counter's badge is the missing counter's badge."""
    await seeded(harness, private=True)
    private = await harness.get("/v2/ws/c/badge.svg")
    missing = await harness.get("/v2/ws/nothing/badge.svg?label=c")
    assert private.status_code == missing.status_code == 404
    assert private.content == missing.content


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Referer": "https://blog.example/post"}, 200),
        ({"Origin": "https://evil.example"}, 403),
        ({}, 403),
    ],
)
async def test_count_up_follows_allowed_origins(
    harness: Harness, headers: dict[str, str], status: int
) -> None:
    """count=up is held to the counter's allowed origins like up; a refusal counts nothing."""
    ws = await harness.workspace("ws")
    c = await harness.counter(ws, "c")
    await harness.store.change_counter(
        c.id, CounterChange(bounds=(None, None), origins=("https://blog.example",))
    )
    r = await harness.client.get("/v2/ws/c/badge.svg?count=up", headers=headers)
    assert r.status_code == status
    counter = await harness.store.read_counter("ws", "c")
    assert counter is not None
    assert counter.up_count == (1 if status == 200 else 0)
    if status == 403:
        assert texts(r.content) == ["c", "forbidden"]


async def test_count_up_follows_the_workspace_origins(harness: Harness) -> None:
    """count=up takes the workspace's allowed origins when the counter has none of its
    own, like up; a plain badge (a read) is not held to them; a token of the workspace
    is not either, another workspace's token is."""
    ws = await harness.workspace("ws")
    other = await harness.workspace("other")
    await harness.counter(ws, "c")
    await harness.store.set_workspace_rules(ws.id, v1_open=False, origins=("https://blog.example",))
    own = await harness.token(ws, Permission.WRITE)
    theirs = await harness.token(other, Permission.WRITE)
    evil = {"Origin": "https://evil.example"}
    cases = [
        ({"Referer": "https://blog.example/post"}, None, 200),
        (evil, None, 403),
        ({}, None, 403),
        (evil, own, 200),
        (evil, theirs, 403),
    ]
    for headers, token, status in cases:
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        r = await harness.client.get("/v2/ws/c/badge.svg?count=up", headers={**headers, **auth})
        assert r.status_code == status, (headers, token)
    counter = await harness.store.read_counter("ws", "c")
    assert counter is not None
    assert counter.up_count == 2  # the 403s counted nothing
    assert (await harness.client.get("/v2/ws/c/badge.svg", headers=evil)).status_code == 200
    r = await harness.client.get("/v2/ws/c/up", headers=evil)  # the same rule as up
    assert r.status_code == 403
