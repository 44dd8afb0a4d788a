"""A flood of new counter names against two real servers on one database on PostgreSQL +
Redis, and against one on SQLite (one server per database file: a second is refused):
each Write token creates at most its budget of new counters (TALLY_CREATE_RATE_LIMIT,
shared by the nodes through Redis), the workspace never holds more than its quota
(TALLY_COUNTER_QUOTA, checked in the creating transaction), every refusal is a 403 or
429 in the API's JSON shape that created and counted nothing, and the existing counters
count on."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from .abuse import database
from .server import TallyCli, TallyServer

pytestmark = [pytest.mark.e2e, pytest.mark.abuse]

BUDGET = 12  # new counters per token (per hour)
QUOTA = 30  # counters in the workspace, "c" included
TOKENS = 4
NAMES_PER_TOKEN = 20  # 80 attempts: over every budget, and past the quota


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def two_nodes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[list[TallyServer], TallyCli, int]]:
    """Two started servers on one database (rate limit off; on SQLite the same one
    twice, as a second server on its file is refused), the admin CLI, and the new
    counters a token may create on them together: the budget, shared through Redis."""
    env = {
        "TALLY_RATE_LIMIT": "off",
        "TALLY_CREATE_RATE_LIMIT": f"{BUDGET}/hour",
        "TALLY_COUNTER_QUOTA": str(QUOTA),
    }
    url, env = database(request, tmp_path, env)
    cli = TallyCli(url, env=env)
    cli.workspace("ws")
    cli.counter("ws/c")
    servers: list[TallyServer] = []
    try:
        for i in range(1 if request.param == "sqlite" else 2):
            workdir = tmp_path / f"node-{i}"
            workdir.mkdir()
            server = TallyServer(workdir, database_url=url, args=["--no-bootstrap"], env=env)
            servers.append(server.start())
        yield servers * (2 // len(servers)), cli, BUDGET
    finally:
        for server in servers:
            server.close()


async def test_a_flood_of_new_names_stops_at_the_budget_and_the_quota(
    two_nodes: tuple[list[TallyServer], TallyCli, int],
) -> None:
    """80 ups of new names from 4 tokens, alternating between 2 nodes, all at once: at
    most a budget created per token, exactly 30 counters in the end, the rest refused."""
    servers, cli, budget = two_nodes
    tokens = [cli.token("ws", "write") for _ in range(TOKENS)]
    admin = cli.token("ws", "admin")
    bases = [f"http://127.0.0.1:{s.port}" for s in servers]
    async with httpx.AsyncClient(timeout=30.0) as client:

        async def up(i: int, token: str, name: str) -> tuple[str, int, bytes]:
            r = await client.get(
                f"{bases[i % 2]}/v2/ws/{name}/up", headers={"Authorization": f"Bearer {token}"}
            )
            return token, r.status_code, r.content

        answers = await asyncio.gather(
            *(
                up(i + t, token, f"flood-{t}-{i}")
                for t, token in enumerate(tokens)
                for i in range(NAMES_PER_TOKEN)
            )
        )
        created = Counter(token for token, status, _ in answers if status == 200)
        statuses = Counter(status for _, status, _ in answers)
        assert set(statuses) <= {200, 403, 429}, statuses
        assert statuses[200] == QUOTA - 1, statuses  # "c" was there
        assert max(created.values()) <= budget, created
        if budget == BUDGET:
            assert statuses[429] >= TOKENS * (NAMES_PER_TOKEN - BUDGET), statuses
        for _, status, body in answers:
            if status != 200:
                error = orjson.loads(body)
                assert error["code"] == str(status)
                assert ("quota of 30 counters" if status == 403 else "new counters") in error[
                    "message"
                ]
        settings = await client.get(
            f"{bases[0]}/v2/ws/-/settings",
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert settings.json()["data"]["counters"] == QUOTA
        listed = await client.get(
            f"{bases[1]}/v2/ws/-/counters",
            params={"limit": 200},
            headers={"Authorization": f"Bearer {admin}"},
        )
        names = {c["name"] for c in listed.json()["data"]["counters"]}
        assert len(names) == QUOTA
        for _, status, body in answers:
            if status != 200:
                continue
            name = orjson.loads(body)["data"]["name"]
            assert name in names
        # the existing counters count on, on both nodes
        for base in bases:
            r = await client.get(
                f"{base}/v2/ws/c/up", headers={"Authorization": f"Bearer {tokens[0]}"}
            )
            assert r.status_code == 200, r.text
