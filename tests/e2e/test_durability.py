"""Durability of a real server: crashes, graceful stops, and the first-start bootstrap."""

from __future__ import annotations

import asyncio
import re
import signal
from typing import Any

import httpx
import pytest

from .conftest import ServerFactory
from .server import (
    TOKEN_RE,
    BurstResult,
    TallyCli,
    TallyServer,
    burst,
    get_data,
    wait_until,
)

BURST_TOTAL = 3_000
BURST_CONNECTIONS = 32
KILL_AFTER_ACKS = 600


async def _data(server: TallyServer, path: str, token: str | None) -> dict[str, Any]:
    return await get_data(server.port, path, token)


async def _counts(server: TallyServer, path: str, token: str | None) -> tuple[int, int]:
    data = await _data(server, path, token)
    return int(data["up_count"]), int(data["down_count"])


def _committed_up(cli: TallyCli, workspace: str, name: str) -> int:
    """The counter's committed up_count as `tally counter list` shows it."""
    for line in cli.run("counter", "list", workspace).stdout.splitlines():
        fields = line.split("\t")
        if fields[1] == name:
            return int(fields[3].removeprefix("up="))
    raise AssertionError(f"no counter {name} in the list")


async def test_commit_mode_sigkill_mid_burst_loses_no_acknowledged_up(
    make_server: ServerFactory, cli: TallyCli
) -> None:
    """Commit mode, SIGKILL mid-burst: after restart the count is >= every acknowledged up."""
    server = make_server(
        durability="commit", args=["--no-bootstrap"], env={"TALLY_RATE_LIMIT": "off"}
    )
    cli.workspace("ws")
    token = cli.token("ws", "write")
    result = BurstResult()

    async def killer() -> None:
        reached = await wait_until(lambda: result.ok >= KILL_AFTER_ACKS, within=20)
        assert reached, f"only {result.ok} acknowledged ups in 20 s\n{server.output()}"
        await asyncio.to_thread(server.kill)

    bursting = burst(
        server.port,
        "/v2/ws/crash/up",
        total=BURST_TOTAL,
        connections=BURST_CONNECTIONS,
        token=token,
        time_limit=30,
        stop_on_error=True,
        result=result,
    )
    async with asyncio.TaskGroup() as tasks:  # a failure in one cancels the other
        tasks.create_task(bursting)
        tasks.create_task(killer())

    acknowledged = result.ok
    assert set(result.statuses) == {200}, result.statuses
    assert acknowledged < BURST_TOTAL, "the kill came after the burst: nothing was in flight"
    server.start()
    up, down = await _counts(server, "/v2/ws/crash", token)
    print(
        f"\nSIGKILL mid-burst: attempted {result.attempted}, acknowledged {acknowledged}, "
        f"failed {result.failed}, refused {result.refused}; counted after restart {up}"
    )
    assert up >= acknowledged, f"acknowledged {acknowledged} ups, only {up} survived"
    assert up >= max(result.up_counts), "a value answered to a client was not durable"
    assert up <= result.attempted, f"counted {up} ups, but only {result.attempted} were sent"
    assert down == 0
    # the hourly history commits in the same transaction as the totals
    stats = (await _data(server, "/v2/ws/crash/stats", token))["stats"]
    assert stats["today"] == {"up": up, "down": 0}, stats["today"]


@pytest.mark.parametrize("durability", ["commit", "buffered"])
async def test_sigterm_mid_burst_keeps_every_acknowledged_up(
    make_server: ServerFactory, cli: TallyCli, durability: str
) -> None:
    """A graceful stop (SIGTERM) under load: every up answered 200 is there after restart."""
    env = {"TALLY_RATE_LIMIT": "off", "TALLY_FLUSH_INTERVAL": "3600"}
    server = make_server(durability=durability, args=["--no-bootstrap"], env=env)
    cli.workspace("ws")
    cli.counter("ws/term")
    token = cli.token("ws", "write")
    result = BurstResult()

    async def stopper() -> None:
        reached = await wait_until(lambda: result.ok >= KILL_AFTER_ACKS, within=20)
        assert reached, f"only {result.ok} acknowledged ups in 20 s\n{server.output()}"
        await asyncio.to_thread(server.stop, signal.SIGTERM)

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(
            burst(
                server.port,
                "/v2/ws/term/up",
                total=BURST_TOTAL,
                connections=BURST_CONNECTIONS,
                token=token,
                time_limit=30,
                stop_on_error=True,
                result=result,
            )
        )
        tasks.create_task(stopper())

    assert result.ok < BURST_TOTAL, "the stop came after the burst: nothing was in flight"
    server.start()
    up, _ = await _counts(server, "/v2/ws/term", token)
    print(
        f"\nSIGTERM mid-burst ({durability}): attempted {result.attempted}, "
        f"acknowledged {result.ok}, statuses {dict(result.statuses)}; counted {up}"
    )
    assert result.ok <= up <= result.attempted
    assert up >= max(result.up_counts)


@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
    ids=["SIGTERM", "SIGINT", "SIGINT-to-group-like-ctrl-c"],
)
async def test_buffered_mode_graceful_stop_flushes_everything(
    make_server: ServerFactory, cli: TallyCli, sig: signal.Signals, group: bool
) -> None:
    """Buffered mode, hour-long flush interval: a SIGTERM/SIGINT stop commits every ack."""
    n = 500
    env = {"TALLY_RATE_LIMIT": "off", "TALLY_FLUSH_INTERVAL": "3600"}
    server = make_server(durability="buffered", args=["--no-bootstrap"], env=env)
    cli.workspace("ws")
    cli.counter("ws/buf")
    token = cli.token("ws", "write")

    result = await burst(server.port, "/v2/ws/buf/up", total=n, connections=16, token=token)
    assert result.statuses == {200: n}, result
    assert await _counts(server, "/v2/ws/buf", token) == (n, 0)
    # the ups are only in the server's memory: nothing committed yet
    assert _committed_up(cli, "ws", "buf") == 0

    code = server.stop(sig, group=group)
    assert _committed_up(cli, "ws", "buf") == n, f"exit code {code}\n{server.output()}"
    server.start()
    assert await _counts(server, "/v2/ws/buf", token) == (n, 0)


_CURL = re.compile(
    r"curl -H 'Authorization: Bearer (tly_[A-Za-z0-9]{38})' "
    r"http://127\.0\.0\.1:(\d+)/v2/default/first/up"
)


def test_bootstrap_prints_a_working_admin_token_once(
    make_server: ServerFactory, cli: TallyCli
) -> None:
    """First start on an empty database prints workspace, tly_ token and curl; only once."""
    server = make_server()
    # read while the server runs, its stdout a file (as under docker or systemd): the token
    # must not sit in a buffer until exit
    out = server.stdout()
    assert "'default'" in out, server.output()
    tokens = set(TOKEN_RE.findall(out))
    assert len(tokens) == 1, server.output()
    [token] = tokens
    curl = _CURL.search(out)
    assert curl is not None, server.output()
    assert curl.group(1) == token
    assert int(curl.group(2)) == server.port

    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=5) as http:
        r = http.get("/v2/default/first/up", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["up_count"] == 1

    server.restart()
    assert "tly_" not in server.stdout(), server.output()
    assert len(cli.run("token", "list", "--workspace", "default").stdout.splitlines()) == 1
    assert [line.split("\t")[1] for line in cli.run("workspace", "list").stdout.splitlines()] == [
        "default"
    ]


def test_no_bootstrap_creates_nothing(make_server: ServerFactory, cli: TallyCli) -> None:
    """--no-bootstrap on an empty database prints no token and creates no workspace."""
    server = make_server(args=["--no-bootstrap"])
    assert "tly_" not in server.stdout(), server.output()
    assert "default" not in server.stdout(), server.output()
    server.stop()
    assert cli.run("workspace", "list").stdout == ""
