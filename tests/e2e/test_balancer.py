"""Two real nodes behind the shipped nginx configuration (tools/cluster.py): a counting
request is never replayed on another node."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from services import REDIS_URL, require_redis

from tools.cluster import Cluster

from .server import CONNECTION_ERRORS, HOST, HttpConnection, TallyCli

TALLY = str(Path(sys.executable).parent / "tally")
REQUESTS = 20


def free_port_block(n: int) -> int:
    """A port P with P .. P+n free on 127.0.0.1 right now."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + n + 1):
                sock = socket.socket()
                socks.append(sock)
                sock.bind((HOST, port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no block of free ports")


@pytest.fixture
def balanced(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Cluster, TallyCli]]:
    """Two nodes on this test's PostgreSQL schema behind nginx (installed if missing)."""
    require_redis()
    cli = TallyCli(postgres_url)
    cli.workspace("ws")
    cluster = Cluster(tmp_path / "cluster", port=free_port_block(2), nodes=2)
    env = {
        "TALLY_DATABASE_URL": postgres_url,
        "TALLY_REDIS_URL": REDIS_URL,
        "TALLY_REDIS_PREFIX": f"tally-test-{os.urandom(6).hex()}:",
        "TALLY_RATE_LIMIT": "off",
        "TALLY_TRUSTED_PROXIES": "127.0.0.1",
    }
    try:
        cluster.start_nodes([TALLY, "serve", "--no-bootstrap", "--host", HOST], env)
        cluster.start_balancer()
        yield cluster, cli
    finally:
        cluster.stop()


async def _up(port: int, token: str) -> int | None:
    """One `up` through the balancer on a connection of its own, never retried: its
    status, or None when the connection broke."""
    try:
        conn = await HttpConnection.open(port)
        try:
            return (await conn.get("/v2/ws/c/up", token, within=30)).status
        finally:
            conn.close()
    except CONNECTION_ERRORS:
        return None


@pytest.mark.postgres
async def test_a_node_that_dies_after_committing_is_not_replayed(
    balanced: tuple[Cluster, TallyCli], postgres_url: str
) -> None:
    """Ups queue behind a row lock on both nodes; node 0 is frozen, the lock released (so
    PostgreSQL commits node 0's batch unanswered), then node 0 is killed. Each request
    must count at most once: a balancer that replayed node 0's requests on node 1 would
    count them twice (before the fix: more counted than sent)."""
    cluster, cli = balanced
    token = cli.token("ws", "write")
    cli.counter("ws/c")
    schema = postgres_url.split("schema=")[1].split("&")[0]
    with psycopg.connect(postgres_url.split("?")[0], options=f"-c search_path={schema}") as lock:
        lock.execute("SELECT 1 FROM counters WHERE name = 'c' FOR UPDATE")
        sent = [asyncio.create_task(_up(cluster.port, token)) for _ in range(REQUESTS)]
        await asyncio.sleep(1.0)  # every request is on a node, the first batches sent
        victim = cluster.procs[0]
        os.killpg(victim.pid, signal.SIGSTOP)  # granian and its worker
        lock.rollback()  # PostgreSQL now commits the frozen node's batch too
        await asyncio.sleep(1.0)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        statuses = await asyncio.gather(*sent)
    with psycopg.connect(postgres_url.split("?")[0], options=f"-c search_path={schema}") as db:
        row = db.execute("SELECT up_count FROM counters WHERE name = 'c'").fetchone()
    assert row is not None
    counted = int(row[0])
    acknowledged = statuses.count(200)
    assert acknowledged <= counted <= REQUESTS, (statuses, counted)
    assert acknowledged >= 1  # node 1's requests went through
    assert counted > acknowledged  # node 0 committed some it never answered
