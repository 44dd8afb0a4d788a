"""Alerts end to end (issue 24 part 2): real `tally serve` processes post to a real
receiver on 127.0.0.1 (tests/webhook_receiver.py, which checks every signature itself),
on SQLite and on PostgreSQL + Redis.

- a firing's latency from the crossing `up` to the receiver, over 50 firings;
- a node killed (SIGKILL) between the commit and the delivery delivers after restart,
  with the same webhook-id;
- a receiver down for a while gets every firing, once each, when it is back;
- two nodes counting one counter at once: each crossing fires exactly once.

The figures are printed (run with -s to see them) and in docs/api.md.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from webhook_receiver import Receiver

from .abuse import Backend, database
from .server import TallyServer, burst

ENV = {
    "TALLY_RATE_LIMIT": "off",
    "TALLY_WEBHOOK_PRIVATE": "true",  # the receiver is on 127.0.0.1
    "TALLY_ALERT_BACKOFF_SCALE": "0.01",  # retries after 50 ms, 100 ms, 200 ms ...
    "TALLY_ALERT_INTERVAL": "1",
    "TALLY_WEBHOOK_TIMEOUT": "1",  # a killed node's lease runs out after 7 s
}


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    url, env = database(request, tmp_path, ENV)
    return Backend(request.param, url, env, tmp_path)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


class Site:
    """A workspace `ws` with an Admin and a Write token, on a started server."""

    def __init__(self, backend: Backend, servers: list[TallyServer]) -> None:
        cli = backend.cli()
        cli.workspace("ws")
        self.admin = cli.token("ws", "admin")
        self.write = cli.token("ws", "write")
        self.servers = servers

    async def call(self, method: str, path: str, body: Any = None, node: int = 0) -> Any:
        async with httpx.AsyncClient(base_url=self.servers[node].base_url, trust_env=False) as c:
            r = await c.request(
                method, path, json=body, headers={"Authorization": f"Bearer {self.admin}"}
            )
        assert r.status_code < 300, r.text
        return r.json()["data"]

    async def watch(self, receiver: Receiver, **rule: Any) -> None:
        """A webhook to `receiver` and a rule posting to it."""
        hook = await self.call("POST", "/v2/ws/-/webhooks", {"url": receiver.url})
        receiver.secret = hook["secret"]
        await self.call("POST", "/v2/ws/-/alerts", {**rule, "webhook_id": hook["id"]})

    async def up(self, name: str, node: int = 0, client: httpx.AsyncClient | None = None) -> None:
        url = f"{self.servers[node].base_url}/v2/ws/{name}/up"
        headers = {"Authorization": f"Bearer {self.write}"}
        if client is None:
            async with httpx.AsyncClient(trust_env=False) as c:
                r = await c.get(url, headers=headers)
        else:
            r = await client.get(url, headers=headers)
        assert r.status_code == 200, r.text

    async def settled(self, count: int, within: float = 20) -> list[dict[str, Any]]:
        """The delivery log once `count` firings are in it and none is pending."""
        deadline = time.monotonic() + within
        while True:
            log = (await self.call("GET", "/v2/ws/-/deliveries"))["deliveries"]
            if len(log) >= count and all(d["state"] != "pending" for d in log):
                return list(log)
            assert time.monotonic() < deadline, log
            await asyncio.sleep(0.05)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def test_a_firing_reaches_the_receiver_fast_and_signed(
    backend: Backend, receiver: Receiver
) -> None:
    """50 crossings, one at a time: each reaches the receiver once, signed; the latency
    from sending the crossing `up` to the receiver's arrival is printed (median, p99)."""
    server = backend.server().start()
    try:
        site = Site(backend, [server])
        await site.watch(receiver, kind="above", threshold=1)  # any counter reaching 1
        latencies = []
        async with httpx.AsyncClient(trust_env=False) as client:  # one keep-alive connection
            for i in range(50):
                sent = time.time()
                await site.up(f"page-{i}", client=client)
                got = await receiver.wait_for(i + 1, 10)
                latencies.append(got[-1].at - sent)
        got = await receiver.wait_for(50, 1)
        assert all(r.signed for r in got)
        assert sorted(r.body["data"]["counter"] for r in got) == sorted(
            f"page-{i}" for i in range(50)
        )
        assert len({r.event_id for r in got}) == 50
        median, p99 = statistics.median(latencies), quantile(latencies, 0.99)
        print(f"\n[{backend.name}] up -> receiver: median {median * 1000:.1f} ms, "
              f"p99 {p99 * 1000:.1f} ms over 50 firings")  # fmt: skip
        assert p99 < 2.0
        log = await site.settled(50)
        assert {(d["state"], d["attempts"]) for d in log} == {("delivered", 1)}
    finally:
        server.close()


async def test_a_node_killed_before_delivering_delivers_after_restart(
    backend: Backend, receiver: Receiver
) -> None:
    """The receiver holds the first try unanswered; the node is SIGKILLed then (the
    firing committed, its delivery not done); after a restart the firing comes again with
    the same webhook-id and is logged delivered."""
    server = backend.server().start()
    try:
        site = Site(backend, [server])
        await site.watch(receiver, counter=None, kind="above", threshold=3)
        receiver.set_mode("hang")
        for _ in range(3):
            await site.up("orders")
        first = (await receiver.wait_for(1, 10))[0]
        server.kill()
        receiver.set_mode("ok")
        restarted = time.time()
        server.restart()
        got = await receiver.wait_for(2, 20)
        assert [r.event_id for r in got] == [first.event_id] * 2
        assert all(r.signed for r in got)
        assert got[1].body == first.body
        print(f"\n[{backend.name}] killed node: delivered {got[1].at - restarted:.2f} s "
              "after the restart began")  # fmt: skip
        log = await site.settled(1)
        assert [(d["state"], d["attempts"]) for d in log] == [("delivered", 2)]
        one = await site.call("GET", f"/v2/ws/-/deliveries/{log[0]['id']}")
        assert [a["status"] for a in one["attempts_log"]] == [204]  # the killed try: no entry
    finally:
        server.close()


async def test_a_receiver_down_gets_every_firing_once_back(
    backend: Backend, receiver: Receiver
) -> None:
    """With the receiver's port closed, 20 crossings fail and are retried on the backoff;
    once it listens again every one arrives, once, signed."""
    server = backend.server().start()
    try:
        site = Site(backend, [server])
        await site.watch(receiver, kind="above", threshold=1)
        receiver.stop()
        await asyncio.gather(*(site.up(f"item-{i}") for i in range(20)))

        deadline = time.monotonic() + 20
        while True:  # every firing tried 3 times or more, all refused
            log = (await site.call("GET", "/v2/ws/-/deliveries"))["deliveries"]
            if len(log) == 20 and all(d["attempts"] >= 3 for d in log):
                break
            assert time.monotonic() < deadline, log
            await asyncio.sleep(0.05)
        back = time.time()
        receiver.start()
        got = await receiver.wait_for(20, 20)
        await asyncio.sleep(0.3)  # nothing more comes
        assert len(receiver.ids()) == 20
        assert len(set(receiver.ids())) == 20
        assert all(r.signed for r in got)
        log = await site.settled(20)
        tries = [d["attempts"] for d in log]
        print(f"\n[{backend.name}] receiver down: 20 firings, all in "
              f"{max(r.at for r in got) - back:.2f} s after it came back, "
              f"{min(tries)}-{max(tries)} tries each")  # fmt: skip
        assert {d["state"] for d in log} == {"delivered"}
    finally:
        server.close()


@pytest.mark.parametrize("backend", ["postgresql+redis"], indirect=True)
async def test_two_nodes_counting_at_once_fire_each_crossing_once(
    backend: Backend, receiver: Receiver
) -> None:
    """Two nodes on one PostgreSQL take 1,000 ups of one counter at once (500 each, 16
    connections each): each of the 10 thresholds it crosses fires exactly once, delivered
    once, by whichever node claimed it."""
    # no bootstrap: the test makes its own workspace (the bootstrap's token is not needed)
    servers = [backend.server({"TALLY_BOOTSTRAP": "false"}) for _ in range(2)]
    try:
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
        site = Site(backend, servers)
        await site.call("POST", "/v2/ws/-/counters", {"name": "hot"})
        hook = await site.call("POST", "/v2/ws/-/webhooks", {"url": receiver.url})
        receiver.secret = hook["secret"]
        for t in range(100, 1001, 100):
            rule = {"counter": "hot", "kind": "above", "threshold": t, "webhook_id": hook["id"]}
            await site.call("POST", "/v2/ws/-/alerts", rule)
        results = await asyncio.gather(
            *(burst(s.port, "/v2/ws/hot/up", total=500, connections=16, token=site.write)
              for s in servers)
        )  # fmt: skip
        assert [r.ok for r in results] == [500, 500]
        got = await receiver.wait_for(10, 20)
        log = await site.settled(10)
        await asyncio.sleep(0.3)  # nothing more comes
        assert len(receiver.ids()) == 10
        assert sorted(r.body["data"]["threshold"] for r in got) == list(range(100, 1001, 100))
        for r in got:
            data = r.body["data"]
            assert data["value_before"] < data["threshold"] <= data["value"]
            assert r.signed
        assert {d["state"] for d in log} == {"delivered"}
        nodes_used = {a["node"] for d in log for a in (await site.call(
            "GET", f"/v2/ws/-/deliveries/{d['id']}"))["attempts_log"]}  # fmt: skip
        print(f"\n[two nodes] 10 crossings, 10 firings, delivered by {len(nodes_used)} node(s)")
    finally:
        for s in servers:
            s.close()
