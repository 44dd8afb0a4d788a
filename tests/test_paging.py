"""Keyset paging of the counter list (tally.storage.paging): walking the pages forward
with `next`, or back with `previous`, gives every matching counter once, in order, on
both backends, whatever the ties."""

from __future__ import annotations

import asyncio
import base64
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tally.errors import BadRequest
from tally.models import Counter
from tally.storage import counter_lists, paging, store_from_url
from tally.storage.base import Store
from tally.storage.dashboard import DashboardTables

_slugs = itertools.count()

rows = st.lists(
    st.tuples(
        st.text("abAB_%", min_size=1, max_size=4),  # names: ties in any case, wildcards
        st.integers(0, 3),  # up: many ties
        st.integers(0, 2),  # down
        st.sampled_from([1.0, 2.5, 1e9 + 0.125]),  # updated_at
    ),
    max_size=30,
    unique_by=lambda r: r[0],
)


def expected(counters: list[Counter], sort: str, descending: bool, search: str) -> list[str]:
    found = [c for c in counters if search.lower() in c.name.lower()]
    found.sort(key=lambda c: paging.key_of(c, sort), reverse=descending)
    return [c.name for c in found]


async def check(
    url: str, data: list[tuple[str, int, int, float]], sort: str, desc: bool, limit: int, q: str
) -> None:
    store = store_from_url(url, node="paging")
    await store.open()
    try:
        assert isinstance(store, DashboardTables)
        ws = await store.create_workspace(f"p{next(_slugs)}", "p")
        if data:
            await store._change(
                [
                    (
                        "INSERT INTO counters (workspace_id, name, up_count, down_count, "
                        "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s)",
                        (ws.id, name, up, down, 1.0, at),
                    )
                    for name, up, down, at in data
                ]
            )
        everything = await store.list_counters(ws.id)
        want = expected(everything, sort, desc, q)
        kw: dict[str, Any] = {"search": q, "sort": sort, "descending": desc, "limit": limit}
        seen: list[str] = []
        page = await store.counter_page(ws.id, **kw)
        assert page.previous is None
        assert page.total == len(want if q else everything)
        pages = [page]
        while page.next:
            page = await store.counter_page(ws.id, after=page.next, **kw)
            assert page.counters
            assert page.previous
            pages.append(page)
        for p in pages:
            assert len(p.counters) <= limit
            seen += [c.name for c in p.counters]
        assert seen == want
        # and back, from the last page
        back = [c.name for c in page.counters]
        while page.previous:
            page = await store.counter_page(ws.id, before=page.previous, **kw)
            assert len(page.counters) == limit
            back = [c.name for c in page.counters] + back
        assert back == want
    finally:
        await store.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=rows,
    sort=st.sampled_from(sorted(paging.SORTS)),
    desc=st.booleans(),
    limit=st.integers(1, 7),
    q=st.sampled_from(["", "a", "B", "_", "%", "aba", "AB_", "%_a", "bbbb"]),
)
def test_pages_walk_every_counter_once_in_order(
    store_url: str,
    data: list[tuple[str, int, int, float]],
    sort: str,
    desc: bool,
    limit: int,
    q: str,
) -> None:
    """Forward by `next` and back by `previous`: every match once, in the sort's order."""
    asyncio.run(check(store_url, data, sort, desc, limit, q))


@pytest.mark.parametrize(
    ("sort", "cursor"),
    [
        ("name", "%%%"),
        ("name", paging.encode((1, 2))),
        ("up", paging.encode(("a",))),
        ("up", paging.encode((1.5, 2))),
        ("up", paging.encode((True, 2))),
        ("updated", base64.urlsafe_b64encode(b"[1.5, 1180591620717411303424]").decode()),
        ("updated", paging.encode((1.5,))),
        ("name", "x" * 2000),
    ],
)
def test_a_foreign_cursor_is_refused(sort: str, cursor: str) -> None:
    """A cursor of another sort, or no cursor at all, is a BadRequest."""
    with pytest.raises(BadRequest):
        paging.decode(cursor, sort)


async def test_search_paths_agree(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search of 3+ characters from the index (few matches) or the list's index (many:
    over the cap) finds the same counters; a short one in a big workspace is refused."""
    ws = await store.create_workspace("ws", "ws")
    names = ["xabcx", "ABC", "abd", "zabcz", "q%_abc", 'a"bc', "abc\\"]
    for name in names:
        await store.create_counter(ws.id, name)

    async def walk(search: str) -> tuple[list[str], int, bool]:
        page = await store.counter_page(ws.id, search=search, limit=2)
        seen = [c.name for c in page.counters]
        while page.next:
            page = await store.counter_page(ws.id, search=search, limit=2, after=page.next)
            seen += [c.name for c in page.counters]
        return seen, page.total, page.exact

    want = ["ABC", "abc\\", "q%_abc", "xabcx", "zabcz"]
    assert await walk("abc") == (want, 5, True)
    assert (await walk('a"b'))[0] == ['a"bc']
    assert (await walk("%_a"))[0] == ["q%_abc"]
    monkeypatch.setattr(counter_lists, "SEARCH_COUNT_CAP", 2)
    assert await walk("abc") == (want, 2, False)
    assert await walk("ab") == ([*want[:2], "abd", *want[2:]], 2, False)
    monkeypatch.setattr(counter_lists, "SHORT_SEARCH_MAX", 6)
    assert (await walk("abc"))[0] == want
    with pytest.raises(BadRequest):
        await store.counter_page(ws.id, search="ab")
