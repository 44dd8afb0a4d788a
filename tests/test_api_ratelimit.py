"""Rate limiting on the V2 API: headers, 429s, and what a budget is keyed by.

Every app here allows LIMIT requests per minute, so a budget refills one request every 12 s:
far slower than a test, so the LIMIT + 1-th request in a row is always rejected.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from conftest import Harness, HarnessFactory
from helpers import assert_error, bearer
from services import TcpProxy

from tally.config import RateLimit, Settings
from tally.models import Permission
from tally.web.app import create_app

LIMIT = 5
PERIOD = 60.0
PEER = "198.51.100.7"  # the client address of the harness's own client
PROXY = "10.0.0.5"
TRUSTED = (ipaddress.ip_network("10.0.0.0/8"),)
ACTIONS = ("", "/up", "/down", "/reset", "/stats")
LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")

ClientAt = Callable[[Harness, str], Awaitable[httpx.AsyncClient]]


def whole_seconds(value: str) -> int:
    """A header value that must be a non-negative integer number of seconds."""
    assert value.isdigit(), value
    return int(value)


async def spend(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None, n: int = LIMIT
) -> None:
    """`n` requests to `path`, every one admitted."""
    for i in range(n):
        r = await client.get(path, headers=headers)
        assert r.status_code != 429, (i, r.text)


async def assert_admitted(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None
) -> None:
    """One request to `path` is admitted from a full budget (LIMIT - 1 remain after it)."""
    r = await client.get(path, headers=headers)
    assert r.status_code != 429, r.text
    assert r.headers["x-ratelimit-remaining"] == str(LIMIT - 1)


async def assert_limited(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None
) -> None:
    """The next request to `path` is rejected with 429."""
    assert_error(await client.get(path, headers=headers), 429)


async def limited(make_harness: HarnessFactory, **overrides: object) -> Harness:
    """An app allowing LIMIT requests per PERIOD, with the counter ws/c (public)."""
    h = await make_harness(rate_limit=RateLimit(LIMIT, PERIOD), **overrides)
    await h.counter(await h.workspace(), "c")
    return h


async def ws_token(h: Harness, permission: Permission) -> str:
    """A new token of the workspace "ws"."""
    ws = await h.store.get_workspace("ws")
    assert ws is not None
    return await h.token(ws, permission)


async def counts(h: Harness) -> tuple[int, int]:
    """The committed (up, down) of ws/c."""
    counter = await h.store.read_counter("ws", "c")
    assert counter is not None
    return counter.up_count, counter.down_count


@pytest.fixture
async def client_at() -> AsyncIterator[ClientAt]:
    """`await client_at(harness, ip)`: an HTTP client on the harness's app seen from `ip`."""
    clients: list[httpx.AsyncClient] = []

    async def make(h: Harness, ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=h.app, client=(ip, 1234))
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://tally.test"))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


# headers and 429 -------------------------------------------------------------------------


async def test_limit_headers_count_down(make_harness: HarnessFactory) -> None:
    """Admitted responses carry Limit, a Remaining that counts down to 0, and a Reset."""
    h = await limited(make_harness)
    resets = []
    for remaining in range(LIMIT - 1, -1, -1):
        r = await h.get("/v2/ws/c")
        assert r.status_code == 200, r.text
        assert r.headers["x-ratelimit-limit"] == str(LIMIT)
        assert r.headers["x-ratelimit-remaining"] == str(remaining)
        resets.append(whole_seconds(r.headers["x-ratelimit-reset"]))
    assert resets[0] >= 1
    assert resets == sorted(resets)
    assert resets[-1] <= PERIOD


@pytest.mark.parametrize("action", ACTIONS)
async def test_every_action_has_limit_headers(make_harness: HarnessFactory, action: str) -> None:
    """get, up, down, reset and stats responses all carry the rate limit headers."""
    h = await limited(make_harness)
    token = await ws_token(h, Permission.WRITE)
    r = await h.get(f"/v2/ws/c{action}", token)
    assert r.status_code == 200, r.text
    for name in LIMIT_HEADERS:
        assert name in r.headers, name


async def test_not_found_answers_have_limit_headers(make_harness: HarnessFactory) -> None:
    """A 404 for a missing counter counts against the budget and says so in its headers."""
    h = await limited(make_harness)
    r = await h.get("/v2/ws/missing")
    assert_error(r, 404)
    assert r.headers["x-ratelimit-remaining"] == str(LIMIT - 1)


@pytest.mark.parametrize("action", ACTIONS)
async def test_request_over_the_limit_is_429(make_harness: HarnessFactory, action: str) -> None:
    """The LIMIT + 1-th request on one path is a 429 error with Retry-After in whole seconds."""
    h = await limited(make_harness)
    token = await ws_token(h, Permission.WRITE)
    await spend(h.client, f"/v2/ws/c{action}", bearer(token))
    r = await h.get(f"/v2/ws/c{action}", token)
    assert_error(r, 429)
    assert 1 <= whole_seconds(r.headers["retry-after"]) <= PERIOD
    assert r.headers["x-ratelimit-limit"] == str(LIMIT)
    assert r.headers["x-ratelimit-remaining"] == "0"
    assert r.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("action", ["/up", "/down", "/reset"])
async def test_rejected_request_changes_nothing(make_harness: HarnessFactory, action: str) -> None:
    """A request answered 429 changes no count."""
    h = await limited(make_harness)
    token = await ws_token(h, Permission.WRITE)
    await spend(h.client, f"/v2/ws/c{action}", bearer(token))
    await spend(h.client, "/v2/ws/c/up", n=2)  # so that a reset would show
    before = await counts(h)
    await assert_limited(h.client, f"/v2/ws/c{action}", bearer(token))
    assert await counts(h) == before
    data = (await h.get("/v2/ws/c/stats")).json()["data"]
    assert (data["up_count"], data["down_count"]) == before


async def test_no_rate_limit_means_no_headers_and_no_429(make_harness: HarnessFactory) -> None:
    """With rate_limit=None nothing is ever rejected and no limit header is sent."""
    h = await make_harness(rate_limit=None)
    await h.counter(await h.workspace(), "c")
    for _ in range(4 * LIMIT):
        r = await h.get("/v2/ws/c/up")
        assert r.status_code == 200, r.text
        for name in (*LIMIT_HEADERS, "retry-after"):
            assert name not in r.headers, name
    assert await counts(h) == (4 * LIMIT, 0)


# what a budget is keyed by -----------------------------------------------------------------


@pytest.mark.parametrize("other", ["/v2/ws/d", "/v2/ws/c/up", "/v2/ws/c/stats", "/v2/other/c"])
async def test_paths_are_limited_separately(make_harness: HarnessFactory, other: str) -> None:
    """Exhausting one path leaves the budget of another path full."""
    h = await limited(make_harness)
    await spend(h.client, "/v2/ws/c")
    await assert_limited(h.client, "/v2/ws/c")
    await assert_admitted(h.client, other)


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param("/v2/ws/c/", id="trailing-slash"),
        pytest.param("/v2/ws/c?cache=bust", id="query-string"),
        pytest.param("/v2/ws/%63", id="percent-encoded"),
    ],
)
async def test_spellings_of_one_path_share_a_budget(
    make_harness: HarnessFactory, variant: str
) -> None:
    """Another spelling of the same counter's path does not get a fresh budget."""
    h = await limited(make_harness)
    await spend(h.client, "/v2/ws/c")
    await assert_limited(h.client, variant)


async def test_tokens_have_separate_budgets(make_harness: HarnessFactory) -> None:
    """On one path, each token and the anonymous caller have a budget of their own."""
    h = await limited(make_harness)
    first, second = await ws_token(h, Permission.READ), await ws_token(h, Permission.READ)
    await spend(h.client, "/v2/ws/c", bearer(first))
    await assert_limited(h.client, "/v2/ws/c", bearer(first))
    await assert_admitted(h.client, "/v2/ws/c", bearer(second))
    await assert_admitted(h.client, "/v2/ws/c")


async def test_token_budget_is_shared_across_addresses(
    make_harness: HarnessFactory, client_at: ClientAt
) -> None:
    """A token's budget on a path is the same whichever address it comes from."""
    h = await limited(make_harness)
    token = await ws_token(h, Permission.READ)
    await spend(h.client, "/v2/ws/c", bearer(token))
    await assert_limited(await client_at(h, "203.0.113.9"), "/v2/ws/c", bearer(token))


async def test_anonymous_callers_are_keyed_by_address(
    make_harness: HarnessFactory, client_at: ClientAt
) -> None:
    """Anonymous callers from two addresses have separate budgets; one address shares one."""
    h = await limited(make_harness)
    await spend(h.client, "/v2/ws/c")
    await assert_limited(await client_at(h, PEER), "/v2/ws/c")
    await assert_admitted(await client_at(h, "203.0.113.9"), "/v2/ws/c")


@pytest.mark.parametrize("trusted", [(), TRUSTED], ids=["no-proxies", "peer-not-trusted"])
async def test_forwarded_for_is_ignored_from_an_untrusted_peer(
    make_harness: HarnessFactory, trusted: tuple[ipaddress.IPv4Network, ...]
) -> None:
    """From a peer that is no trusted proxy, every X-Forwarded-For value shares one budget."""
    h = await limited(make_harness, trusted_proxies=trusted)
    for i in range(LIMIT):
        await spend(h.client, "/v2/ws/c", {"X-Forwarded-For": f"203.0.113.{i}"}, n=1)
    await assert_limited(h.client, "/v2/ws/c", {"X-Forwarded-For": "203.0.113.99"})
    await assert_limited(h.client, "/v2/ws/c")


async def test_forwarded_for_from_a_trusted_proxy_separates_clients(
    make_harness: HarnessFactory, client_at: ClientAt
) -> None:
    """Behind a trusted proxy, each X-Forwarded-For client has its own budget."""
    h = await limited(make_harness, trusted_proxies=TRUSTED)
    proxy = await client_at(h, PROXY)
    alice, bob = {"X-Forwarded-For": "203.0.113.1"}, {"X-Forwarded-For": "203.0.113.2"}
    await spend(proxy, "/v2/ws/c", alice)
    await assert_limited(proxy, "/v2/ws/c", alice)
    await assert_admitted(proxy, "/v2/ws/c", bob)
    await assert_admitted(proxy, "/v2/ws/c")  # the proxy's own address is a third key


async def test_forwarded_for_uses_the_nearest_untrusted_hop(
    make_harness: HarnessFactory, client_at: ClientAt
) -> None:
    """Behind a trusted proxy, hops a client prepends to X-Forwarded-For do not earn new budgets."""
    h = await limited(make_harness, trusted_proxies=TRUSTED)
    proxy = await client_at(h, PROXY)
    for i in range(LIMIT):
        spoofed = {"X-Forwarded-For": f"192.0.2.{i}, 203.0.113.1, 10.1.2.3"}
        await spend(proxy, "/v2/ws/c", spoofed, n=1)
    await assert_limited(proxy, "/v2/ws/c", {"X-Forwarded-For": "203.0.113.1"})


async def test_forwarded_for_split_over_several_lines_is_one_list(
    make_harness: HarnessFactory, client_at: ClientAt
) -> None:
    """Several X-Forwarded-For lines read as one list: a client-sent first line is no key."""
    h = await limited(make_harness, trusted_proxies=TRUSTED)
    proxy = await client_at(h, PROXY)
    for i in range(LIMIT + 1):
        # the client sent the first line itself; the proxy appended the second
        lines = [("X-Forwarded-For", f"192.0.2.{i}"), ("X-Forwarded-For", "203.0.113.1")]
        r = await proxy.get("/v2/ws/c", headers=lines)
    assert_error(r, 429)


@pytest.mark.parametrize(
    "forged", ["anything", "unknown", "203.0.113.1 extra", "999.1.1.1", "", "_hidden"]
)
async def test_forwarded_for_text_that_is_no_address_is_never_the_client(
    make_harness: HarnessFactory, client_at: ClientAt, forged: str
) -> None:
    """A hop that is not an IP address is never taken as the client: the walk stops at the
    trusted proxy that reported it, so forged values all share the proxy's budget."""
    h = await limited(make_harness, trusted_proxies=TRUSTED)
    proxy = await client_at(h, PROXY)
    for i in range(LIMIT):
        await spend(proxy, "/v2/ws/c", {"X-Forwarded-For": f"{forged}{i}"}, n=1)
    await assert_limited(proxy, "/v2/ws/c", {"X-Forwarded-For": f"{forged}x"})
    await assert_limited(proxy, "/v2/ws/c")  # the proxy's own budget
    await assert_admitted(proxy, "/v2/ws/c", {"X-Forwarded-For": "203.0.113.1"})


async def test_forwarded_for_spellings_of_one_address_share_a_budget(
    make_harness: HarnessFactory, client_at: ClientAt
) -> None:
    """An IPv6 client has one budget however its address is written."""
    h = await limited(make_harness, trusted_proxies=TRUSTED)
    proxy = await client_at(h, PROXY)
    spellings = ["2001:db8::1", "2001:DB8::1", "2001:db8:0:0::1", "2001:0db8::0001", "2001:db8::1"]
    for spelling in spellings[:LIMIT]:
        await spend(proxy, "/v2/ws/c", {"X-Forwarded-For": spelling}, n=1)
    await assert_limited(proxy, "/v2/ws/c", {"X-Forwarded-For": "2001:db8:0::1"})


async def test_an_ipv6_network_shares_one_budget(
    make_harness: HarnessFactory, client_at: ClientAt
) -> None:
    """Every address of one IPv6 /64 spends one budget, on V2 and V1, whether it is the
    socket's peer or a trusted proxy's X-Forwarded-For; another /64 has its own."""
    h = await limited(make_harness, trusted_proxies=TRUSTED, v1_rate_limit=RateLimit(LIMIT, PERIOD))
    ws = await h.store.get_workspace("ws")
    assert ws is not None
    await h.store.set_workspace_rules(ws.id, v1_open=True, origins=())
    proxy = await client_at(h, PROXY)
    for path in ("/v2/ws/c", "/v1/ws/c"):
        for i in range(LIMIT):
            peer = await client_at(h, f"2001:db8:1:2::{i + 1:x}")
            await spend(peer, path, n=1)
        await assert_limited(await client_at(h, "2001:db8:1:2:ffff:ffff:ffff:ffff"), path)
        forwarded = {"X-Forwarded-For": "2001:db8:1:2:abcd::1"}
        await assert_limited(proxy, path, forwarded)  # the same /64 through the proxy
        await assert_admitted(await client_at(h, "2001:db8:1:3::1"), path)  # the next /64


async def test_the_ipv6_prefix_is_a_setting(
    make_harness: HarnessFactory, client_at: ClientAt
) -> None:
    """TALLY_IPV6_PREFIX=48 counts a /48 as one client; 128 counts each address."""
    h = await limited(make_harness, ipv6_prefix=48)
    for i in range(LIMIT):
        await spend(await client_at(h, f"2001:db8:1:{i}::1"), "/v2/ws/c", n=1)
    await assert_limited(await client_at(h, "2001:db8:1:ffff::1"), "/v2/ws/c")
    await assert_admitted(await client_at(h, "2001:db8:2::1"), "/v2/ws/c")
    h = await make_harness(rate_limit=RateLimit(LIMIT, PERIOD), ipv6_prefix=128)  # same ws/c
    await spend(await client_at(h, "2001:db8::1"), "/v2/ws/c")
    await assert_admitted(await client_at(h, "2001:db8::2"), "/v2/ws/c")


async def test_an_ipv4_mapped_peer_is_its_ipv4_address(
    make_harness: HarnessFactory, client_at: ClientAt
) -> None:
    """A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d: each is its IPv4
    address, not one ::ffff:0:0/64 shared by every IPv4 client."""
    h = await limited(make_harness)
    await spend(await client_at(h, "::ffff:203.0.113.1"), "/v2/ws/c")
    await assert_limited(await client_at(h, "203.0.113.1"), "/v2/ws/c")
    await assert_admitted(await client_at(h, "::ffff:203.0.113.2"), "/v2/ws/c")


async def test_bad_tokens_spend_the_client_address_budget(make_harness: HarnessFactory) -> None:
    """Requests with invalid tokens count against the client IP, so guessing is limited too."""
    h = await limited(make_harness)
    for i in range(LIMIT):
        r = await h.client.get("/v2/ws/c", headers=bearer(f"tly_{'x' * 42}{i % 10}"))
        assert_error(r, 401)
        assert r.headers["x-ratelimit-remaining"] == str(LIMIT - 1 - i)
    assert_error(await h.client.get("/v2/ws/c", headers=bearer("tly_guess")), 429)
    await assert_limited(h.client, "/v2/ws/c")  # the same address, now without a token


# scale-out, Redis gone -------------------------------------------------------------------


@pytest.mark.postgres
async def test_without_redis_each_live_node_admits_its_share(
    postgres_url: str, redis_prefix: str, redis_proxy: TcpProxy
) -> None:
    """Two nodes on one database lose Redis: each counts two live nodes (their heartbeats
    in the database) and admits half the limit, which its headers say."""
    settings = Settings(
        database_url=postgres_url,
        redis_url=f"redis://127.0.0.1:{redis_proxy.port}/0",
        redis_prefix=redis_prefix,
        rate_limit=RateLimit(6, PERIOD),
    )
    a, b = create_app(settings), create_app(settings)
    await a.startup()
    await b.startup()
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tally.test")
        for app in (a, b)
    ]
    try:
        for app in (a, b):
            assert app.services is not None
            assert app.services.nodes is not None
            assert await app.services.nodes.refresh() == 2
        await redis_proxy.cut()
        for client in clients:
            for remaining in (2, 1, 0):
                r = await client.get("/v2/ws/c")
                assert_error(r, 404)  # no such counter: counted all the same
                limit = (r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"])
                assert limit == ("3", str(remaining))
            r = await client.get("/v2/ws/c")
            assert_error(r, 429)
            assert r.headers["x-ratelimit-limit"] == "3"
    finally:
        for client in clients:
            await client.aclose()
        await b.shutdown()
        await a.shutdown()
