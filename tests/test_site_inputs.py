"""Numbers from outside on every route of the website and the API, on every backend: an
id or a page number out of range (beyond 64 bits, negative, zero), or not a number at
all, is a 404 or a 400, never a 5xx (tally.numbers reads them all). The routes are
walked from the site's own route table, so a new route is fuzzed as soon as it exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pytest
from conftest import BrowserFactory, Harness
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from site_client import SiteClient
from site_routes import BAD_NUMBERS, FORM, QUERY_NAMES, SIGN_OUT, fill, routes

from tally.models import Permission, Role
from tally.numbers import row_id
from tally.site.security import BodyLimit
from tally.web.http import Message, Receive, Scope, Send

T = TypeVar("T")


async def owner(harness: Harness, make_browser: BrowserFactory) -> SiteClient:
    """Ann, signed in, owner of "ann" with a counter, a token, a member and an invitation."""
    b = await make_browser(harness)
    assert (await b.sign_up("ann@example.com")).status_code == 303
    ws = await harness.store.get_workspace("ann")
    assert ws is not None
    await harness.counter(ws, "hits")
    await harness.token(ws, Permission.READ)
    other = await harness.store.create_account("bob@example.com", "x", 0.0)
    await harness.store.add_member(ws.id, other.id, Role.VIEWER, 0.0)
    await b.submit("/w/ann/members", {"email": "carl@example.com", "role": "viewer"})
    await b.get("/w/ann")  # a CSRF token of the signed-in session
    return b


async def send(b: SiteClient, method: str, path: str) -> httpx.Response:
    if method == "GET":
        return await b.client.get(path)
    return await b.post(path, FORM)


async def test_every_site_route_refuses_bad_numbers(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """Each parameter of each route, every bad number: 404 for an id (no row has it),
    never a 5xx for anything."""
    b = await owner(harness, make_browser)
    failures = []
    for method, template, params in routes():
        for value in BAD_NUMBERS:
            if not value and params:
                continue  # an empty segment is another path
            r = await send(b, method, fill(template, value))
            ids = [p for p in params if p.endswith("_id")]
            if r.status_code >= 500 or (ids and r.status_code != 404):
                failures.append(f"{method} {template} {value[:30]!r}: {r.status_code}")
    assert failures == []
    for path in SIGN_OUT:
        assert (await b.post(path + "?page=" + "9" * 25, FORM)).status_code == 303


async def test_every_get_route_refuses_bad_query_numbers(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """Every query parameter a page reads, with every bad number, on every GET route: no
    5xx; the list's cursor, mangled, is its first page."""
    b = await owner(harness, make_browser)
    counter = await harness.store.read_counter("ann", "hits")
    assert counter is not None
    failures = []
    for method, template, _ in routes():
        if method != "GET" or template.endswith("/stream"):
            continue
        path = fill(template, str(counter.id))
        for name in QUERY_NAMES:
            for value in BAD_NUMBERS:
                r = await b.client.get(path, params={name: value})
                if r.status_code >= 500:
                    failures.append(f"{template}?{name}={value[:30]!r}: {r.status_code}")
    assert failures == []
    # the list pages by cursor: a mangled one, or any `page`, shows the first page
    for value in BAD_NUMBERS:
        r = await b.client.get("/w/ann", params={"after": value, "page": value})
        assert r.status_code == 200, value
        assert ">hits</a>" in r.text


def in_thread_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)


async def test_generated_ids_on_every_id_route(
    harness: Harness, make_browser: BrowserFactory
) -> None:
    """Hypothesis: any integer (far beyond 64 bits either way) or text as every id of
    every route: never a 5xx, and a 404 whenever it is no row id at all."""
    b = await owner(harness, make_browser)
    id_routes = [(m, t) for m, t, params in routes() if any(p.endswith("_id") for p in params)]
    loop = asyncio.get_running_loop()
    failures: list[str] = []

    @given(
        value=st.one_of(
            st.integers(min_value=-(2**80), max_value=2**80).map(str),
            # not "", "." or "..", nor with "/": another path, not another id
            st.text(max_size=24).filter(lambda v: v.strip(".") != "" and "/" not in v),
        )
    )
    @settings(
        max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def run(value: str) -> None:
        for method, template in id_routes:
            r = in_thread_on(loop, send(b, method, fill(template, value)))
            if r.status_code >= 500 or (row_id(value) is None and r.status_code != 404):
                failures.append(f"{method} {template} {value[:30]!r}: {r.status_code}")

    await asyncio.to_thread(run)
    assert failures == []


async def test_api_numbers_out_of_range(harness: Harness) -> None:
    """The API's numbers go through the same reading: a 400 naming the range for a query
    value, a 404 for an id in a path."""
    ws = await harness.workspace("ws")
    await harness.counter(ws, "c")
    admin = await harness.token(ws, Permission.ADMIN)
    for value in BAD_NUMBERS:
        q = quote(value, safe="")
        r = await harness.get(f"/v2/ws/c/up?by={q}", admin)
        assert r.status_code == 400, value
        assert r.json()["message"] == "by must be a whole number from 1 to 1000000"
        r = await harness.get(f"/v2/ws/-/counters?limit={q}", admin)
        assert r.status_code == 400, value
        assert r.json()["message"] == "limit must be a whole number from 1 to 200"
        assert (await harness.get(f"/v2/ws/-/counters?offset={q}x", admin)).status_code == 400
        if q:
            assert (await harness.get(f"/v2/ws/-/counters/{q}", admin)).status_code == 404
            r = await harness.client.delete(
                f"/v2/ws/-/tokens/{q}", headers={"Authorization": f"Bearer {admin}"}
            )
            assert r.status_code == 404, value


@pytest.mark.parametrize("length", ["9" * 5000, "9" * 25, "\u0663", "-1", "1e3"])
async def test_a_form_body_length_out_of_range_is_413(length: str) -> None:
    """A Content-Length of 5,000 digits (int() refuses past 4,300), or one that is no
    number, is the body limit's 413 before anything reads the body."""
    reached: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(True)

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", length.encode())]}
    await BodyLimit(app)(scope, receive, send)
    assert sent[0]["status"] == 413
    assert reached == []
