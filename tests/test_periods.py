"""Periods (tally/periods.py): a period's totals and chart agree with a reference summed
bucket by bucket from the hourly buckets, in any time zone of the tz database (DST,
half- and quarter-hour offsets, skipped days), and `today` agrees with `stats`; on both
backends the store's sums over a workspace and a page's sparklines agree with the same
reference, and the counter page and its JSON show them in the workspace's zone."""

from __future__ import annotations

import random
import re
import time
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from conftest import BrowserFactory, Harness
from hypothesis import given, settings
from hypothesis import strategies as st

from tally import periods, stats
from tally.errors import BadRequest
from tally.models import BatchChanges, CounterDelta, CounterRecord, Permission
from tally.periods import Period
from tally.storage import Store
from tally.storage.overview import Scope

# zones that test the edges: DST both ways, half- and quarter-hour offsets, a
# half-hour DST (Lord Howe), +13/+14 and a skipped day (Apia), a 2-hour DST (Troll)
EDGES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/St_Johns",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "America/Santiago",
    "Antarctica/Troll",
    "Pacific/Pago_Pago",
]
KEYS = [*periods.PERIODS, "custom"]
# 2010-01-01 .. 2030-01-01, as unix seconds
NOW = st.integers(min_value=1_262_304_000, max_value=1_893_456_000)


def day_of(hour: int, tz: tzinfo) -> date:
    """The reference: the local date of the bucket's start, from UTC by astimezone."""
    return datetime.fromtimestamp(hour * 3600, UTC).astimezone(tz).date()


def reference(
    buckets: list[tuple[int, int, int]], first: date, last: date, tz: tzinfo
) -> tuple[int, int]:
    up = down = 0
    for hour, u, d in buckets:
        if first <= day_of(hour, tz) <= last:
            up += u
            down += d
    return up, down


def period_of(data: st.DataObject, now: float, tz: tzinfo) -> Period:
    key = data.draw(st.sampled_from(KEYS))
    if key != "custom":
        return periods.parse({"period": key}, now, tz)
    today = datetime.fromtimestamp(now, tz).date()
    first = today - timedelta(days=data.draw(st.integers(0, 400)))
    last = first + timedelta(days=data.draw(st.integers(0, min(120, (today - first).days + 1))))
    return periods.parse({"from": first.isoformat(), "to": last.isoformat()}, now, tz)


def buckets_around(data: st.DataObject, period: Period) -> list[tuple[int, int, int]]:
    """Buckets in, before and after the period and its previous one, edges included."""
    before = period.previous()
    low, high = before.start_hour - 30, period.end_hour + 30
    edges = [before.start_hour, period.start_hour, period.end_hour]
    hours = data.draw(
        st.lists(
            st.one_of(
                st.integers(low, high),
                st.sampled_from([e + k for e in edges for k in (-2, -1, 0, 1)]),
            ),
            max_size=60,
        )
    )
    return [(h, data.draw(st.integers(0, 9)), data.draw(st.integers(0, 3))) for h in hours]


@settings(max_examples=400, deadline=None)
@given(zone=st.timezones(), now=NOW, data=st.data())
def test_totals_and_chart_agree_with_the_buckets(
    zone: ZoneInfo, now: int, data: st.DataObject
) -> None:
    """In any zone, a period's totals (and its previous period's) are the buckets whose
    local start date is in it, and its chart's bars add up to the same, each bar holding
    the buckets of its own dates."""
    period = period_of(data, now, zone)
    buckets = buckets_around(data, period)
    summary = periods.summary(buckets, period)
    assert (summary["up"], summary["down"]) == reference(buckets, period.first, period.last, zone)
    before = period.previous()
    assert before.days == period.days
    assert before.last == period.first - timedelta(days=1)
    assert (summary["previous"]["up"], summary["previous"]["down"]) == reference(
        buckets, before.first, before.last, zone
    )
    chart = periods.chart(buckets, period)
    assert (sum(chart["up"]), sum(chart["down"])) == (summary["up"], summary["down"])
    if chart["unit"] != "hour":  # each day's (or week's) bar holds its own dates
        _, starts = period.bars()
        firsts = [day_of(s, zone) for s in starts]
        for i, first in enumerate(firsts):
            last = firsts[i + 1] - timedelta(days=1) if i + 1 < len(firsts) else period.last
            assert (chart["up"][i], chart["down"][i]) == reference(buckets, first, last, zone)


@settings(max_examples=300, deadline=None)
@given(zone=st.sampled_from(EDGES) | st.timezones(), now=NOW, data=st.data())
def test_today_agrees_with_stats(zone: ZoneInfo | str, now: int, data: st.DataObject) -> None:
    """`today` (and yesterday + today against this week's) are what `stats` answers."""
    tz = ZoneInfo(zone) if isinstance(zone, str) else zone
    today = periods.parse({"period": "today"}, now, tz)
    hours = data.draw(st.lists(st.integers(today.start_hour - 200, now // 3600), max_size=50))
    buckets = [(h, data.draw(st.integers(0, 9)), data.draw(st.integers(0, 3))) for h in hours]
    summary = stats.summarize(buckets, now, tz)
    ours = periods.summary(buckets, today)
    assert {"up": ours["up"], "down": ours["down"]} == summary["today"]
    monday = today.first - timedelta(days=today.first.weekday())
    week = periods.parse({"from": monday.isoformat(), "to": today.last.isoformat()}, now, tz)
    assert {"up": periods.totals(buckets, week).up, "down": periods.totals(buckets, week).down} == (
        summary["this_week"]
    )


def test_a_period_is_one_range_of_hours_in_every_zone() -> None:
    """The contiguous range rests on the local date never going back as hours go on:
    true of every zone of the tz database over the years buckets are kept for."""
    start = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) // 86400
    for name in periods.zone_names():
        tz = ZoneInfo(name)
        offsets = [
            datetime.fromtimestamp(d * 86400, tz).utcoffset() for d in range(start, start + 3 * 366)
        ]
        for i in range(len(offsets) - 1):
            if offsets[i] == offsets[i + 1]:
                continue  # no change within the UTC day: its local dates go on with it
            day = (start + i) * 24
            previous = day_of(day - 1, tz)
            for hour in range(day, day + 25):
                assert periods.local_day(hour, tz) >= previous, (name, hour)
                previous = periods.local_day(hour, tz)


@pytest.mark.parametrize(
    "query",
    [
        {"period": "week"},
        {"period": ""},
        {"from": "2026-01-05"},
        {"from": "2026-01-05", "to": "2026-01-04"},
        {"from": "2026-1-5", "to": "2026-01-06"},
        {"from": "1999-12-31", "to": "2000-01-02"},
        {"from": "2020-01-01", "to": "2026-01-01"},
        {"from": "2026-01-01", "to": "2099-01-01"},
        {"from": "\uff12\uff10\uff12\uff16-01-01", "to": "2026-01-02"},
    ],
)
def test_bad_periods_are_refused(query: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        periods.parse(query, time.time(), UTC)


def test_units_fit_the_length() -> None:
    now = datetime(2026, 3, 29, 12, tzinfo=UTC).timestamp()
    berlin = ZoneInfo("Europe/Berlin")
    today = periods.parse({"period": "today"}, now, berlin)
    assert today.unit == "hour"
    assert len(today.bars()[1]) == 23
    assert periods.parse({"period": "7d"}, now, berlin).unit == "day"
    assert len(periods.parse({"period": "90d"}, now, berlin).bars()[1]) == 90
    year = periods.parse({"period": "12m"}, now, berlin)
    assert year.unit == "week"
    assert 53 <= len(year.bars()[1]) <= 54
    assert year.first == date(2025, 3, 30)


# -- the store, on both backends -------------------------------------------------------


async def fill(
    store: Store, rng: random.Random, now: float
) -> tuple[int, dict[int, list[tuple[int, int, int]]]]:
    """A workspace of 6 counters (2 private) with random buckets over the last 2 years."""
    ws = await store.create_workspace("ws", "ws")
    last = int(now // 3600)
    history: dict[int, list[tuple[int, int, int]]] = {}
    hours: dict[tuple[int, int], list[int]] = {}
    deltas = {}
    for i in range(6):
        c = await store.create_counter(ws.id, f"c{i}", private=i >= 4)
        chosen = rng.sample(range(last - 800 * 24, last + 1), 300)
        history[c.id] = [(h, rng.randrange(10), rng.randrange(4)) for h in chosen]
        for h, u, d in history[c.id]:
            hours[(c.id, h)] = [u, d]
        deltas[c.id] = CounterDelta(
            sum(u for _, u, _ in history[c.id]), sum(d for _, _, d in history[c.id]), False, now
        )
    other = await store.create_workspace("other", "other")
    stranger = await store.create_counter(other.id, "c0")
    hours[(stranger.id, last)] = [1000, 1000]
    deltas[stranger.id] = CounterDelta(1000, 1000, False, now)
    await store.apply(BatchChanges(seq=1, counters=deltas, hours=hours))
    return ws.id, history


async def test_store_sums_agree_with_the_buckets(store: Store) -> None:
    """A workspace's bars and previous period, the counters that changed most and a
    page's sparklines, read in one statement each, are the reference's sums in every
    zone of the edges and periods of every length; a shared scope leaves out the
    private counters it does not include; another workspace's buckets never count."""
    rng = random.Random(23)
    now = time.time()
    workspace_id, history = await fill(store, rng, now)
    everything = [b for buckets in history.values() for b in buckets]
    ids = sorted(history)
    private = set(ids[4:])
    for name in EDGES:
        tz = ZoneInfo(name)
        for key in KEYS:
            query = {"period": key}
            if key == "custom":
                query = {"from": "2025-10-20", "to": "2026-01-10"}
            period = periods.parse(query, now, tz)
            before = period.previous()
            _labels, starts = period.bars()
            bars, previous = await store.period_bars(
                workspace_id, starts, period.end_hour, before.start_hour
            )
            assert previous == reference(everything, before.first, before.last, tz)
            assert bars == list(
                zip(*[periods.chart(everything, period)[k] for k in ("up", "down")], strict=True)
            )
            shared = Scope(public_only=True, included=(ids[5],))
            seen = [b for cid in ids if cid not in private or cid == ids[5] for b in history[cid]]
            bars, _ = await store.period_bars(
                workspace_id, starts, period.end_hour, before.start_hour, shared
            )
            assert [sum(b) for b in zip(*bars, strict=True)] == list(
                reference(seen, period.first, period.last, tz)
            )
            lines = await store.sparklines(ids, starts, period.end_hour)
            for cid in ids:
                chart = periods.chart(history[cid], period)
                assert lines[cid] == list(zip(chart["up"], chart["down"], strict=True))
            movers = await store.movers(
                workspace_id, before.start_hour, period.start_hour, period.end_hour, 3
            )
            expected = []
            for cid in ids:
                now_up, now_down = reference(history[cid], period.first, period.last, tz)
                was_up, was_down = reference(history[cid], before.first, before.last, tz)
                if now_up + now_down != was_up + was_down:
                    expected.append((-abs(now_up + now_down - was_up - was_down), cid))
            assert [m.id for m in movers] == [cid for _, cid in sorted(expected)[:3]]


# -- the site, in-process on both backends ------------------------------------------------


async def test_counter_page_period_in_the_workspace_zone(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """The counter page and its JSON show the period's totals and change in the
    workspace's zone (set on the settings form), which /stats then uses too; a bad
    period or zone is a 400 that changes nothing."""
    b = await make_browser(harness)
    assert (await b.sign_up("ann@example.com")).status_code == 303
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    bad = await b.submit("/w/ann/settings/timezone", {"timezone": "Mars/Olympus"})
    assert bad.status_code == 400
    assert "no time zone" in bad.text
    r = await b.submit("/w/ann/settings/timezone", {"timezone": "Asia/Kolkata"})
    assert r.status_code == 303
    # buckets over the last three days, each hour different: the days of Kolkata and
    # of UTC hold different sums
    now = time.time()
    last = int(now // 3600)
    hours = tuple((h, h % 7 + 1, h % 3) for h in range(last - 72, last + 1))
    record = CounterRecord(
        "visits",
        "",
        False,
        sum(u for _, u, _ in hours),
        sum(d for _, _, d in hours),
        now - 80 * 3600,
        now,
        hours,
    )
    await harness.store.import_counters(ws.id, [record])
    counter = await harness.store.read_counter("ann", "visits")
    assert counter is not None
    token = await harness.token(ws, Permission.READ)
    api = (await harness.get("/v2/ann/visits/stats", token)).json()["data"]["stats"]
    data = (await b.get(f"/w/ann/c/{counter.id}/data.json?period=today")).json()
    assert data["timezone"] == "Asia/Kolkata"
    assert data["period"]["timezone"] == "Asia/Kolkata"
    if int(now // 3600) != int(time.time() // 3600):
        pytest.skip("the test crossed an hour boundary")
    kolkata = periods.parse({"period": "today"}, now, ZoneInfo("Asia/Kolkata"))
    expected = periods.summary(list(hours), kolkata)
    assert {"up": data["period"]["up"], "down": data["period"]["down"]} == api["today"]
    assert api["today"] == {"up": expected["up"], "down": expected["down"]}
    assert data["period"]["previous"] == expected["previous"]
    in_utc = periods.summary(list(hours), periods.parse({"period": "today"}, now, UTC))
    assert (in_utc["up"], in_utc["previous"]["up"]) != (expected["up"], expected["previous"]["up"])
    seven = periods.summary(
        list(hours), periods.parse({"period": "7d"}, now, ZoneInfo("Asia/Kolkata"))
    )
    page = await b.get(f"/w/ann/c/{counter.id}?period=7d")
    assert page.status_code == 200
    found = re.search(
        r'id="period-up"><span class="label">Up</span><span class="value">(\d+)', page.text
    )
    assert found is not None
    assert int(found[1]) == seven["up"]
    assert "Asia/Kolkata" in page.text
    assert 'aria-current="page">Last 7 days' in page.text
    fragment = await b.get(f"/w/ann/c/{counter.id}/period?period=today")
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith("<section")
    for query in ("period=forever", "from=2026-02-30&to=2026-03-01", "from=x&to=y"):
        assert (await b.get(f"/w/ann/c/{counter.id}?{query}")).status_code == 400
        assert (await b.get(f"/w/ann/c/{counter.id}/data.json?{query}")).status_code == 400
    saved = await harness.store.get_workspace("ann")
    assert saved is not None
    assert saved.timezone == "Asia/Kolkata"


async def test_management_api_sets_the_zone(harness: Harness) -> None:
    """PATCH settings takes an IANA name or null; anything else is a 400 that changes
    nothing."""
    ws = await harness.workspace()
    admin = await harness.token(ws, Permission.ADMIN)
    url = "/v2/ws/-/settings"
    headers = {"Authorization": f"Bearer {admin}"}
    r = await harness.client.patch(url, json={"timezone": "America/St_Johns"}, headers=headers)
    assert r.status_code == 200
    assert r.json()["data"]["timezone"] == "America/St_Johns"
    for bad in ("Nowhere/Town", 5, "", "x" * 200):
        r = await harness.client.patch(url, json={"timezone": bad}, headers=headers)
        if bad == "":
            assert r.status_code == 200
            assert r.json()["data"]["timezone"] is None
            await harness.client.patch(url, json={"timezone": "America/St_Johns"}, headers=headers)
            continue
        assert r.status_code == 400, bad
    got = (await harness.get(url, admin)).json()["data"]
    assert got["timezone"] == "America/St_Johns"
    r = await harness.client.patch(url, json={"timezone": None}, headers=headers)
    assert r.json()["data"]["timezone"] is None
