"""Exactness under load: 10,000 concurrent `up`s on one counter against a real server."""

from __future__ import annotations

import time

from .conftest import ServerFactory
from .server import BurstResult, TallyCli, TallyServer, burst, get_data

TOTAL = 10_000
CONNECTIONS = 64
NO_LIMIT = {"TALLY_RATE_LIMIT": "off"}


async def hammer(
    make_server: ServerFactory, cli: TallyCli, durability: str
) -> tuple[TallyServer, str, BurstResult]:
    """A server in `durability` mode and TOTAL ups of ws/hits over CONNECTIONS connections,
    every one answered 200."""
    server = make_server(durability=durability, args=["--no-bootstrap"], env=NO_LIMIT)
    cli.workspace("ws")
    token = cli.token("ws", "write")
    started = time.monotonic()
    result = await burst(
        server.port, "/v2/ws/hits/up", total=TOTAL, connections=CONNECTIONS, token=token
    )
    elapsed = time.monotonic() - started
    print(f"\n{durability}: {TOTAL} ups over {CONNECTIONS} connections in {elapsed:.2f} s")
    assert result.failed == result.refused == 0, result
    assert result.statuses == {200: TOTAL}, result.statuses
    return server, token, result


async def test_commit_mode_every_up_counted_once_with_its_own_value(
    make_server: ServerFactory, cli: TallyCli
) -> None:
    """Commit mode: 10,000 ups over 64 connections give 10,000, each answer a distinct 1..N."""
    server, token, result = await hammer(make_server, cli, "commit")
    assert sorted(result.up_counts) == list(range(1, TOTAL + 1))
    data = await get_data(server.port, "/v2/ws/hits", token)
    assert (data["up_count"], data["down_count"]) == (TOTAL, 0)
    stats = await get_data(server.port, "/v2/ws/hits/stats", token)
    assert stats["stats"]["today"] == {"up": TOTAL, "down": 0}


async def test_buffered_mode_every_up_answered_and_counted(
    make_server: ServerFactory, cli: TallyCli
) -> None:
    """Buffered mode: 10,000 ups all get 200, get shows 10,000, and so does a restart."""
    server, token, result = await hammer(make_server, cli, "buffered")
    assert max(result.up_counts) == TOTAL
    data = await get_data(server.port, "/v2/ws/hits", token)
    assert (data["up_count"], data["down_count"]) == (TOTAL, 0)

    server.restart()  # SIGTERM flushes what is buffered
    data = await get_data(server.port, "/v2/ws/hits", token)
    assert (data["up_count"], data["down_count"]) == (TOTAL, 0)
