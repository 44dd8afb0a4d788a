"""Scale-out: real `tally serve` nodes on one PostgreSQL and one Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from psycopg import sql
from services import REDIS_URL, TcpProxy, require_redis

from .server import (
    TOKEN_RE,
    BurstResult,
    HttpConnection,
    TallyCli,
    TallyServer,
    burst,
    wait_until,
)

NODES = 2


class Cluster:
    """`NODES` servers sharing one database and one Redis key prefix."""

    def __init__(self, tmp_path: Path, database_url: str, env: dict[str, str]) -> None:
        self.cli = TallyCli(database_url)
        self.nodes: list[TallyServer] = []
        for i in range(NODES):
            workdir = tmp_path / f"node-{i}"
            workdir.mkdir(parents=True)
            self.nodes.append(
                TallyServer(workdir, database_url=database_url, args=["--no-bootstrap"], env=env)
            )

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def close(self) -> None:
        for node in self.nodes:
            node.close()


MakeCluster = Callable[..., Cluster]


def cluster_env(**extra: str) -> dict[str, str]:
    return {
        "TALLY_REDIS_URL": REDIS_URL,
        "TALLY_REDIS_PREFIX": f"tally-test-{uuid.uuid4().hex[:12]}:",
        "TALLY_RATE_LIMIT": "off",
        **extra,
    }


@pytest.fixture
def make_cluster(tmp_path: Path, postgres_url: str) -> Iterator[MakeCluster]:
    """`make_cluster(**env)`: a started cluster on this test's own PostgreSQL schema."""
    require_redis()
    made: list[Cluster] = []

    def make(**env: str) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster-{len(made)}", postgres_url, cluster_env(**env))
        made.append(cluster)
        cluster.cli.workspace("ws")  # migrates the schema before the nodes race to it
        cluster.start()
        return cluster

    yield make
    for cluster in made:
        cluster.close()


async def get_json(node: TallyServer, path: str, token: str | None = None) -> tuple[int, object]:
    conn = await HttpConnection.open(node.port)
    try:
        response = await conn.get(path, token)
    finally:
        conn.close()
    return response.status, response.json()


async def up_count(node: TallyServer, path: str) -> int:
    status, body = await get_json(node, path)
    assert status == 200, body
    assert isinstance(body, dict)
    return int(body["data"]["up_count"])


async def test_two_nodes_lose_no_count(make_cluster: MakeCluster) -> None:
    """20,000 ups over 64 connections spread on both nodes: each node then reads 20,000."""
    cluster = make_cluster()
    token = cluster.cli.token("ws", "write")
    a, b = cluster.nodes
    results = await asyncio.gather(
        burst(a.port, "/v2/ws/hot/up", total=10_000, connections=32, token=token),
        burst(b.port, "/v2/ws/hot/up", total=10_000, connections=32, token=token),
    )
    assert [r.ok for r in results] == [10_000, 10_000]
    values = sorted(v for r in results for v in r.up_counts)
    assert values[-1] == 20_000
    assert len(set(values)) == 20_000  # every request got its own value, across nodes
    assert await up_count(a, "/v2/ws/hot") == 20_000
    assert await up_count(b, "/v2/ws/hot") == 20_000


async def test_a_write_on_one_node_is_read_on_the_other(make_cluster: MakeCluster) -> None:
    """Commit mode: an acknowledged up on node A is in the next read on node B."""
    cluster = make_cluster()
    token = cluster.cli.token("ws", "write")
    a, b = cluster.nodes
    for expected in range(1, 21):
        status, _ = await get_json((a, b)[expected % 2], "/v2/ws/ping/up", token)
        assert status == 200
        assert await up_count((b, a)[expected % 2], "/v2/ws/ping") == expected


async def test_one_rate_limit_across_nodes(make_cluster: MakeCluster) -> None:
    """A burst on one path through both nodes admits the limit once (within 1 %)."""
    cluster = make_cluster(TALLY_RATE_LIMIT="600/60s")
    cluster.cli.counter("ws/limited")
    a, b = cluster.nodes
    started = time.monotonic()
    results = await asyncio.gather(
        burst(a.port, "/v2/ws/limited/up", total=1_000, connections=16),
        burst(b.port, "/v2/ws/limited/up", total=1_000, connections=16),
    )
    elapsed = time.monotonic() - started
    admitted = sum(r.ok for r in results)
    rejected = sum(r.statuses[429] for r in results)
    refill = int(elapsed * 10) + 1  # 10 a second come back while the burst runs
    assert admitted + rejected == 2_000
    assert 600 <= admitted <= 600 + max(refill, 6), (admitted, elapsed)
    assert await up_count(a, "/v2/ws/limited") == admitted


async def test_sigkill_of_one_node_loses_no_acknowledged_up(
    make_cluster: MakeCluster,
) -> None:
    """One node killed mid-load: every up either node acknowledged is in the database."""
    cluster = make_cluster()
    token = cluster.cli.token("ws", "write")
    a, b = cluster.nodes
    on_a, on_b = BurstResult(), BurstResult()

    async def kill_a() -> None:
        assert await wait_until(lambda: on_a.ok >= 500, within=20), a.output()
        a.kill()

    await asyncio.gather(
        burst(
            a.port,
            "/v2/ws/k/up",
            total=3_000,
            connections=16,
            token=token,
            stop_on_error=True,
            result=on_a,
        ),
        burst(b.port, "/v2/ws/k/up", total=2_000, connections=16, token=token, result=on_b),
        kill_a(),
    )
    acknowledged = on_a.ok + on_b.ok
    counted = await up_count(b, "/v2/ws/k")
    assert acknowledged <= counted <= on_a.attempted + on_b.attempted
    assert on_b.ok == 2_000


async def test_revocation_reaches_every_node_within_a_second(
    make_cluster: MakeCluster,
) -> None:
    """A token revoked with the CLI is refused by both nodes within about a second."""
    cluster = make_cluster()
    token = cluster.cli.token("ws", "write")
    token_id = cluster.cli.run("token", "list", "--workspace", "ws").stdout.split("\t", 1)[0]
    for node in cluster.nodes:  # both nodes now have it cached as valid
        status, _ = await get_json(node, "/v2/ws/r/up", token)
        assert status == 200
    cluster.cli.run("token", "revoke", token_id)
    revoked_at = time.monotonic()
    for node in cluster.nodes:
        while (await get_json(node, "/v2/ws/r", token))[0] != 401:
            assert time.monotonic() - revoked_at < 1.5, "revocation took over 1.5 s"
            await asyncio.sleep(0.05)


async def test_database_outage_is_503_then_recovers(tmp_path: Path, postgres_url: str) -> None:
    """PostgreSQL cut off: 503 with Retry-After, nothing acknowledged lost, then recovery."""
    require_redis()
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    via_proxy = postgres_url.replace(
        f"{target.hostname}:{target.port or 5432}", f"127.0.0.1:{proxy.port}", 1
    )
    cli = TallyCli(via_proxy)
    # blocking calls run in threads: the proxy lives on this test's event loop
    await asyncio.to_thread(cli.workspace, "ws")
    token = await asyncio.to_thread(cli.token, "ws", "write")
    node = TallyServer(tmp_path, database_url=via_proxy, args=["--no-bootstrap"], env=cluster_env())
    await asyncio.to_thread(node.start)
    try:
        acknowledged = 0
        for _ in range(5):
            status, _ = await get_json(node, "/v2/ws/o/up", token)
            acknowledged += status == 200
        await proxy.cut()
        conn = await HttpConnection.open(node.port)
        try:
            response = await conn.get("/v2/ws/o/up", token)
        finally:
            conn.close()
        assert response.status == 503, response.body
        assert int(response.headers["retry-after"]) >= 1
        await proxy.start()
        deadline = time.monotonic() + 15
        while (await get_json(node, "/v2/ws/o/up", token))[0] != 200:
            assert time.monotonic() < deadline, f"no recovery in 15 s\n{node.output()}"
            await asyncio.sleep(0.2)
        acknowledged += 1
        assert await up_count(node, "/v2/ws/o") >= acknowledged
    finally:
        await asyncio.to_thread(node.close)
        await proxy.cut()


async def live_nodes(node: TallyServer, token: str) -> int:
    """The node's count of live nodes, from its /metrics."""
    conn = await HttpConnection.open(node.port)
    try:
        response = await conn.get("/metrics", token)
    finally:
        conn.close()
    assert response.status == 200, response.body
    for line in response.body.decode().splitlines():
        if line.startswith("tally_nodes_live "):
            return int(float(line.split()[1]))
    raise AssertionError("no tally_nodes_live in /metrics")


async def test_without_redis_the_nodes_share_the_rate_limit(
    tmp_path: Path, postgres_url: str
) -> None:
    """Redis cut off under two nodes: each counts the other from the database and admits
    half the limit (its X-RateLimit-Limit says 300), so a burst through both admits the
    limit once (within the refill during the burst), not twice."""
    target = urlsplit(require_redis())
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    metrics = "m" * 32
    env = cluster_env(TALLY_RATE_LIMIT="600/60s", TALLY_METRICS_TOKEN=metrics)
    env["TALLY_REDIS_URL"] = f"redis://127.0.0.1:{proxy.port}/0"
    cluster = Cluster(tmp_path, postgres_url, env)
    # blocking calls run in threads: the proxy lives on this test's event loop
    await asyncio.to_thread(cluster.cli.workspace, "ws")
    await asyncio.to_thread(cluster.cli.counter, "ws/limited")
    await asyncio.to_thread(cluster.start)
    try:
        a, b = cluster.nodes
        deadline = time.monotonic() + 15
        while await live_nodes(a, metrics) != 2:  # a counts b at its next beat (10 s)
            assert time.monotonic() < deadline, a.output()
            await asyncio.sleep(0.2)
        assert await live_nodes(b, metrics) == 2
        await proxy.cut()
        for node in (a, b):
            conn = await HttpConnection.open(node.port)
            try:
                response = await conn.get("/v2/ws/limited")  # a path of its own
            finally:
                conn.close()
            assert response.status == 200, response.body
            assert response.headers["x-ratelimit-limit"] == "300"
        started = time.monotonic()
        results = await asyncio.gather(
            burst(a.port, "/v2/ws/limited/up", total=1_000, connections=16),
            burst(b.port, "/v2/ws/limited/up", total=1_000, connections=16),
        )
        elapsed = time.monotonic() - started
        admitted = sum(r.ok for r in results)
        refill = int(elapsed * 10) + 2  # 5 a second come back on each node meanwhile
        assert sum(r.ok + r.statuses[429] for r in results) == 2_000, results
        assert 600 <= admitted <= 600 + max(refill, 6), (admitted, elapsed)
    finally:
        await asyncio.to_thread(cluster.close)
        await proxy.cut()


@pytest.mark.parametrize("durability", ["commit", "buffered"])
async def test_two_nodes_never_cross_a_ceiling(make_cluster: MakeCluster, durability: str) -> None:
    """A counter with a ceiling of 700 and 1,000 ups spread over both nodes at once:
    exactly 700 are answered 200, each with its own value, 300 are 409, and both nodes
    read 700."""
    cluster = make_cluster(TALLY_DURABILITY=durability)
    token = cluster.cli.token("ws", "write")
    cluster.cli.counter("ws/tickets")
    cluster.cli.run("counter", "update", "ws/tickets", "--ceiling", "700")
    a, b = cluster.nodes
    results = await asyncio.gather(
        burst(a.port, "/v2/ws/tickets/up", total=500, connections=16, token=token),
        burst(b.port, "/v2/ws/tickets/up", total=500, connections=16, token=token),
    )
    assert sum(r.ok for r in results) == 700
    assert sum(r.statuses[409] for r in results) == 300
    values = sorted(v for r in results for v in r.up_counts)
    assert values == list(range(1, 701))
    assert await up_count(a, "/v2/ws/tickets") == 700
    assert await up_count(b, "/v2/ws/tickets") == 700


async def test_ups_on_two_nodes_around_a_set(make_cluster: MakeCluster) -> None:
    """Ups on both nodes while node A sets the counter to 1,000,000: every up is ordered
    before the set (absorbed, answered 1..m) or after it (answered 1,000,001..), each
    once, and the counter ends at 1,000,000 plus the ups after it."""
    cluster = make_cluster()
    token = cluster.cli.token("ws", "write")
    admin = cluster.cli.token("ws", "admin")
    cluster.cli.counter("ws/migrated")
    a, b = cluster.nodes
    on_a, on_b = BurstResult(), BurstResult()

    async def set_midway() -> int:
        assert await wait_until(lambda: on_a.ok + on_b.ok >= 500, within=20)
        status, body = await get_json(a, "/v2/ws/migrated/set?up_count=1000000", admin)
        assert status == 200, body
        assert isinstance(body, dict)
        return int(body["data"]["up_count"])

    *_, answered = await asyncio.gather(
        burst(a.port, "/v2/ws/migrated/up", total=1_500, connections=16, token=token, result=on_a),
        burst(b.port, "/v2/ws/migrated/up", total=1_500, connections=16, token=token, result=on_b),
        set_midway(),
    )
    assert on_a.ok + on_b.ok == 3_000
    values = on_a.up_counts + on_b.up_counts
    before = sorted(v for v in values if v < 1_000_000)
    after = sorted(v for v in values if v > 1_000_000)
    assert len(before) >= 500
    assert before == list(range(1, len(before) + 1))
    assert after == list(range(1_000_001, 1_000_001 + len(after)))
    assert len(before) + len(after) == 3_000
    assert 1_000_000 <= answered <= 1_000_000 + len(after)
    assert await up_count(b, "/v2/ws/migrated") == 1_000_000 + len(after)


async def test_one_v1_rate_limit_across_nodes(make_cluster: MakeCluster) -> None:
    """V1's own limit (30 per minute per path and client IP) is one budget for both
    nodes: 60 V1 ups alternating between them admit 30 (give or take the refill, 1 per 2 s), and
    the counter counts exactly the admitted ones."""
    cluster = make_cluster(TALLY_V1_RATE_LIMIT="30/60s")
    cluster.cli.run("workspace", "update", "ws", "--v1")
    a, b = cluster.nodes
    started = time.monotonic()
    statuses = [(await get_json((a, b)[i % 2], "/v1/ws/visits/up"))[0] for i in range(60)]
    elapsed = time.monotonic() - started
    admitted = statuses.count(200)
    assert admitted + statuses.count(429) == 60
    assert 30 <= admitted <= 30 + int(elapsed / 2) + 1, (admitted, elapsed)
    status, body = await get_json(a, "/v2/ws/visits")
    assert status == 200, body
    assert isinstance(body, dict)
    assert body["data"]["up_count"] == admitted


async def test_live_streams_hear_every_node(make_cluster: MakeCluster) -> None:
    """A stream on each node: an up on either node is an event on both streams."""
    from .sse_client import RawStream

    cluster = make_cluster()
    cluster.cli.counter("ws/live")
    a, b = cluster.nodes
    streams = [await RawStream.open(node.port, "/v2/ws/live/stream") for node in (a, b)]
    for stream in streams:
        assert stream.status == 200
        assert (await stream.next_data())["up_count"] == 0
    for expected, node in enumerate((b, a, b), start=1):
        status, _ = await get_json(node, "/v2/ws/live/up")
        assert status == 200
        for stream in streams:
            data = await stream.next_data(within=10)
            assert data["up_count"] == expected
    for stream in streams:
        stream.drop()


async def test_nodes_starting_at_once_on_an_empty_database(
    tmp_path: Path, postgres_base_url: str, postgres_url: str
) -> None:
    """Three nodes started at the same moment on a new schema: the three migrate it at
    once (they queue on the migration's lock) and serve. Then three nodes with the
    bootstrap on start at once on it, still empty: all of them find no workspace and try
    to make `default` at the same moment; exactly one does, with one Admin token it alone
    prints, and the other two start normally. The token counts through every node."""
    require_redis()
    schema = parse_qs(urlsplit(postgres_url).query)["schema"][0]
    migrate_key = f"tally.migrate:{schema}"
    nodes = []
    for i in range(3):
        workdir = tmp_path / f"node-{i}"
        workdir.mkdir()
        nodes.append(TallyServer(workdir, database_url=postgres_url, env=cluster_env()))
    async with await psycopg.AsyncConnection.connect(postgres_base_url) as lock:
        try:
            # 1. the migrations: their lock held until the three nodes wait for it
            for node in nodes:
                node.args = ["--no-bootstrap"]
            await lock.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (migrate_key,))
            await _release_when_waiting(
                nodes,
                lock,
                lambda: _count(
                    lock,
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND objid::bigint = hashtext(%s)::bigint & 4294967295",
                    migrate_key,
                ),
            )
            for node in nodes:
                status, _ = await get_json(node, "/v2/ws/c")
                assert status == 404, node.output()  # serving, on the empty schema
            await asyncio.gather(*(asyncio.to_thread(node.stop) for node in nodes))

            # 2. the bootstrap: each node reads no workspace, then waits to insert `default`
            for node in nodes:
                node.args = []
            table = sql.Identifier(schema, "workspaces")
            await lock.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table))
            await _release_when_waiting(
                nodes,
                lock,
                lambda: _count(
                    lock,
                    "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted",
                    f"{schema}.workspaces",
                ),
            )
            printed = [TOKEN_RE.findall(node.stdout()) for node in nodes]
            assert sorted(len(tokens) for tokens in printed) == [0, 0, 2], printed  # + curl
            [token] = {t for tokens in printed for t in tokens}
            for expected, node in enumerate(nodes, 1):
                status, body = await get_json(node, "/v2/default/first/up", token)
                assert status == 200, body
                assert isinstance(body, dict)
                assert body["data"]["up_count"] == expected
        finally:
            await asyncio.gather(*(asyncio.to_thread(node.close) for node in nodes))
    cli = TallyCli(postgres_url)
    listed = await asyncio.to_thread(cli.run, "workspace", "list")
    assert [line.split("\t")[1] for line in listed.stdout.splitlines()] == ["default"]
    tokens = await asyncio.to_thread(cli.run, "token", "list", "--workspace", "default")
    assert len(tokens.stdout.splitlines()) == 1, tokens.stdout


async def _count(conn: psycopg.AsyncConnection[tuple[object, ...]], query: str, arg: str) -> int:
    cur = await conn.execute(query, (arg,))
    row = await cur.fetchone()
    assert row is not None
    return int(str(row[0]))


async def _release_when_waiting(
    nodes: list[TallyServer],
    lock: psycopg.AsyncConnection[tuple[object, ...]],
    waiting: Callable[[], Awaitable[int]],
) -> None:
    """Start `nodes` (each in a thread) while `lock`'s transaction holds what they all
    need, wait until each of them waits for it, then commit: they go on at one moment."""
    starts = [asyncio.create_task(asyncio.to_thread(node.start)) for node in nodes]
    deadline = time.monotonic() + 20
    try:
        while await waiting() < len(nodes):
            if any(task.done() for task in starts):
                break  # a node exited before waiting: gather raises with its output
            assert time.monotonic() < deadline, [node.output() for node in nodes]
            await asyncio.sleep(0.02)
    finally:
        await lock.commit()
        await asyncio.gather(*starts)
