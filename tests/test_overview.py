"""The workspace overview (/w/{slug}), in-process on both backends: the period's totals
and change for the whole workspace, the counters that changed most, the list with a
sparkline per counter, and a page's statements that do not grow with its rows."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from conftest import BrowserFactory, Harness
from site_client import SiteClient

from tally import periods
from tally.models import CounterRecord
from tally.storage.dashboard import DashboardTables


async def owner(harness: Harness, make_browser: BrowserFactory) -> tuple[SiteClient, int]:
    b = await make_browser(harness)
    assert (await b.sign_up("ann@example.com")).status_code == 303
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    return b, ws.id


def record(name: str, hours: list[tuple[int, int, int]], private: bool = False) -> CounterRecord:
    now = time.time()
    up, down = sum(h[1] for h in hours), sum(h[2] for h in hours)
    return CounterRecord(name, "", private, up, down, now - 90 * 86400, now, tuple(hours))


def number(page: str, id_: str) -> int:
    found = re.search(
        rf'id="{id_}"><span class="label">[^<]+</span><span class="value">(-?\d+)', page
    )
    assert found is not None, id_
    return int(found[1])


async def test_overview_totals_movers_and_sparklines(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """The first page of a workspace sums every counter's buckets of the period and the
    one before, lists the counters that changed most (biggest change first), and draws
    a sparkline in each row of the list; its links keep the period and the list's
    order."""
    b, workspace_id = await owner(harness, make_browser)
    last = int(time.time() // 3600)
    day = 24
    # steady: the same both weeks; rising: 50 more this week; falling: 30 fewer
    steady = [(last - 2 * day, 10, 0), (last - 9 * day, 10, 0)]
    rising = [(last - day, 60, 5), (last - 8 * day, 10, 5)]
    falling = [(last - 3 * day, 2, 0), (last - 10 * day, 32, 0)]
    quiet: list[tuple[int, int, int]] = []
    await harness.store.import_counters(
        workspace_id,
        [
            record("steady", steady),
            record("rising", rising),
            record("falling", falling, private=True),
            record("quiet", quiet),
        ],
    )
    r = await b.get("/w/ann?period=7d&sort=up&dir=desc")
    assert r.status_code == 200
    page = r.text
    period = periods.parse({"period": "7d"}, time.time(), periods.zone(""))
    everything = steady + rising + falling
    expected = periods.summary(everything, period)
    assert number(page, "period-up") == expected["up"] == 72
    assert number(page, "period-down") == expected["down"] == 5
    assert expected["previous"] == {"up": 52, "down": 5}
    assert "+20 (+38.5 %) vs 52 before" in page
    movers = page[page.index('id="movers"') : page.index('id="list-title"')]
    names = re.findall(r'<a href="/w/ann/c/\d+\?period=7d">([a-z]+)</a>', movers)
    assert names == ["rising", "falling"]  # steady did not change, quiet counted nothing
    table = page[page.index("<table") :]
    assert table.count('class="sparkline"') == 4
    assert 'href="?sort=up&amp;dir=desc&amp;period=30d"' in page  # keeps the order
    assert re.search(r'<a href="/w/ann/c/\d+\?period=7d">rising</a>', table)
    old = await b.get("/w/ann?from=2020-01-01&to=2020-01-31")
    assert number(old.text, "period-up") == 0
    assert "No counter changed against the period before." in old.text
    fragment = await b.get("/w/ann/period?period=30d")
    assert fragment.status_code == 200
    assert 'id="period"' in fragment.text
    assert number(fragment.text, "period-up") == sum(h[1] for h in everything)
    for query in ("period=forever", "from=2026-01-02&to=2026-01-01"):
        assert (await b.get(f"/w/ann?{query}")).status_code == 400
        assert (await b.get(f"/w/ann/period?{query}")).status_code == 400


@pytest.mark.parametrize("rows", [3, 60])
async def test_a_page_costs_the_same_statements_whatever_its_rows(
    harness: Harness, make_browser: BrowserFactory, monkeypatch: pytest.MonkeyPatch, rows: int
) -> None:
    """No statement per row: a page of 3 counters and a page of 50 (of 60) read the
    same statements, the sparklines of all its counters in one."""
    b, workspace_id = await owner(harness, make_browser)
    last = int(time.time() // 3600)
    await harness.store.import_counters(
        workspace_id, [record(f"c{i:02d}", [(last - i, i + 1, 0)]) for i in range(rows)]
    )
    store = harness.store
    assert isinstance(store, DashboardTables)
    fetch = store._fetch
    statements: list[str] = []

    async def counted(sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        statements.append(sql)
        return await fetch(sql, params)

    monkeypatch.setattr(store, "_fetch", counted)
    r = await b.get("/w/ann?period=today")
    assert r.status_code == 200
    shown = min(rows, 50)
    assert r.text[r.text.index("<table") :].count('class="sparkline"') == shown
    sparkline_reads = [s for s in statements if "h.counter_id IN" in s]
    assert len(sparkline_reads) == 1
    # membership, the list's total and page, the workspace's sums, movers, sparklines
    assert len(statements) <= 7, statements
