"""Allowed origins: anonymous up / down of a counter whose (own or workspace's) list is
set must name an allowed origin in Origin, else Referer; anything else is a 403 that
counts nothing. Tokens of the workspace are not held to it; reads are not either."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Harness, HarnessFactory
from helpers import assert_error

from tally.models import CounterChange, Permission

SITE = "https://blog.example"


async def setup(h: Harness, *, counter: tuple[str, ...], workspace: tuple[str, ...]) -> None:
    ws = await h.workspace()
    other = await h.workspace("other")
    c = await h.counter(ws, "c")
    await h.store.change_counter(c.id, CounterChange(bounds=(None, None), origins=counter))
    await h.store.set_workspace_rules(ws.id, v1_open=False, origins=workspace)
    await h.store.set_workspace_rules(other.id, v1_open=False, origins=())


async def up_count(h: Harness) -> int:
    counter = await h.store.read_counter("ws", "c")
    assert counter is not None
    return counter.up_count


HEADERS_ALLOWED = [
    pytest.param({"Origin": SITE}, id="origin"),
    pytest.param({"Origin": "HTTPS://Blog.Example:443"}, id="origin-other-spelling"),
    pytest.param({"Referer": f"{SITE}/posts/1?x=y"}, id="referer"),
    pytest.param({"Origin": "https://www.shop.example"}, id="wildcard"),
]
HEADERS_REFUSED = [
    pytest.param({}, id="none"),
    pytest.param({"Origin": "https://evil.example"}, id="other-origin"),
    pytest.param({"Origin": "http://blog.example"}, id="other-scheme"),
    pytest.param({"Origin": "null"}, id="null"),
    pytest.param({"Origin": "https://evil.example", "Referer": f"{SITE}/"}, id="origin-wins"),
    pytest.param({"Referer": "https://shop.example/"}, id="wildcard-excludes-apex"),
    pytest.param({"Referer": "garbage"}, id="garbage"),
]
RULES = (SITE, "https://*.shop.example")


@pytest.mark.parametrize("headers", HEADERS_ALLOWED)
@pytest.mark.parametrize("action", ["up", "down"])
async def test_an_allowed_origin_counts(
    harness: Harness, action: str, headers: dict[str, str]
) -> None:
    await setup(harness, counter=RULES, workspace=())
    r = await harness.client.get(f"/v2/ws/c/{action}", headers=headers)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("headers", HEADERS_REFUSED)
@pytest.mark.parametrize("action", ["up", "down"])
async def test_anything_else_is_403_and_counts_nothing(
    harness: Harness, action: str, headers: dict[str, str]
) -> None:
    await setup(harness, counter=RULES, workspace=())
    assert_error(await harness.client.get(f"/v2/ws/c/{action}", headers=headers), 403)
    counter = await harness.store.read_counter("ws", "c")
    assert counter is not None
    assert (counter.up_count, counter.down_count) == (0, 0)


async def test_the_workspace_list_applies_and_a_counter_list_replaces_it(
    make_harness: HarnessFactory,
) -> None:
    """A counter without its own list takes its workspace's; its own list replaces it
    (on a node that cached the counter, within the cache TTL)."""
    h = await make_harness(token_cache_ttl=0.01)
    await setup(h, counter=(), workspace=("https://ws.example",))
    ws_site = {"Origin": "https://ws.example"}
    assert (await h.client.get("/v2/ws/c/up", headers=ws_site)).status_code == 200
    assert_error(await h.client.get("/v2/ws/c/up", headers={"Origin": SITE}), 403)
    counter = await h.store.read_counter("ws", "c")
    assert counter is not None
    await h.store.change_counter(counter.id, CounterChange(bounds=(None, None), origins=(SITE,)))
    await asyncio.sleep(0.05)
    assert (await h.client.get("/v2/ws/c/up", headers={"Origin": SITE})).status_code == 200
    assert_error(await h.client.get("/v2/ws/c/up", headers=ws_site), 403)
    assert await up_count(h) == 2


@pytest.mark.parametrize(
    ("permission", "own", "status"),
    [
        (Permission.READ, True, 200),
        (Permission.WRITE, True, 200),
        (Permission.ADMIN, True, 200),
        (Permission.ADMIN, False, 403),  # another workspace's token: as anonymous
    ],
)
async def test_tokens_of_the_workspace_are_not_held_to_it(
    harness: Harness, permission: Permission, own: bool, status: int
) -> None:
    """A token of the counter's workspace counts from anywhere; any other valid token
    gives no more than anonymous access, so it is held to the list too."""
    await setup(harness, counter=RULES, workspace=())
    ws = await harness.store.get_workspace("ws" if own else "other")
    assert ws is not None
    token = await harness.token(ws, permission)
    r = await harness.get("/v2/ws/c/up", token)
    assert r.status_code == status, r.text
    assert await up_count(harness) == (1 if status == 200 else 0)


async def test_reads_are_not_held_to_it(harness: Harness) -> None:
    """get and stats answer anyone, from anywhere."""
    await setup(harness, counter=RULES, workspace=())
    assert (await harness.get("/v2/ws/c")).status_code == 200
    assert (await harness.get("/v2/ws/c/stats")).status_code == 200
