"""Live counts: GET /v2/{workspace}/{name}/stream as Server-Sent Events."""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest
from conftest import Harness, HarnessFactory
from services import REDIS_URL, TcpProxy, require_redis
from sse import Event, OpenStream, bearer
from test_permissions import ACTIONS, MISSING, PRIVATE, PUBLIC, make_world

import tally
from tally.config import Settings
from tally.live import ChangeFeed
from tally.models import CounterChange, Permission
from tally.storage.redis_feed import RedisBus
from tally.web.app import create_app
from tally.web.openapi import document

TALLY_DIR = str(Path(tally.__file__).parent)


async def counter(h: Harness, private: bool = False) -> str:
    """ws/c and a Write token of ws."""
    ws = await h.workspace("ws")
    await h.counter(ws, "c", private=private)
    return await h.token(ws, Permission.WRITE)


async def wait_for(predicate: object, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)


async def test_first_event_is_the_value_then_every_change(harness: Harness) -> None:
    """The stream opens with the counter as get shows it, then sends it after each up."""
    token = await counter(harness)
    stream = await OpenStream(harness.app, "/v2/ws/c/stream").open()
    assert stream.status == 200
    assert stream.response_headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert stream.response_headers[b"cache-control"] == b"no-cache"
    assert b"x-request-id" in stream.response_headers
    first = await stream.next_data()
    assert first == (await harness.get("/v2/ws/c")).json()["data"]
    assert stream.body.startswith(b"retry: 2000\nid: 0-0-")
    for expected in (1, 2):
        up = await harness.get("/v2/ws/c/up", token)
        assert up.status_code == 200
        data = await stream.next_data()
        assert data["up_count"] == expected
        assert data == up.json()["data"]
    stream.drop()
    await stream.closed()


async def test_changes_are_coalesced_to_ten_a_second(harness: Harness) -> None:
    """A burst of ups gives events at least 0.1 s apart, the last one exact."""
    token = await counter(harness)
    stream = await OpenStream(harness.app, "/v2/ws/c/stream").open()
    await stream.next_data()
    for _ in range(40):
        assert (await harness.get("/v2/ws/c/up", token)).status_code == 200
    events: list[Event] = []
    while not events or events[-1].data is None or events[-1].data["up_count"] < 40:
        event = await stream.next_event()
        assert event is not None
        if event.data is not None:
            events.append(event)
    gaps = [b.at - a.at for a, b in itertools.pairwise(events)]
    assert all(gap >= 0.099 for gap in gaps), gaps
    assert len(events) <= 1 + (events[-1].at - events[0].at) / 0.099  # 10 a second at most
    stream.drop()
    await stream.closed()


async def test_heartbeat_comment_on_a_quiet_stream(harness: Harness) -> None:
    """A stream with no change sends a comment line every heartbeat."""
    await counter(harness)
    assert harness.app.services is not None
    harness.app.services.streams.heartbeat = 0.2
    stream = await OpenStream(harness.app, "/v2/ws/c/stream").open()
    await stream.next_data()
    event = await stream.next_event()
    assert event is not None
    assert event.comment == "heartbeat"
    assert event.data is None
    stream.drop()
    await stream.closed()


async def test_last_event_id_gets_the_current_value(harness: Harness) -> None:
    """A client resuming with Last-Event-ID gets the current value at once."""
    token = await counter(harness)
    old = await OpenStream(harness.app, "/v2/ws/c/stream").open()
    await old.next_data()
    old_id = bytes(old.body.split(b"id: ")[1].split(b"\n")[0])
    old.drop()
    await old.closed()
    await harness.get("/v2/ws/c/up", token)
    await harness.get("/v2/ws/c/up", token)
    resumed = OpenStream(harness.app, "/v2/ws/c/stream", [(b"last-event-id", old_id)])
    await resumed.open()
    data = await resumed.next_data()
    assert data["up_count"] == 2
    resumed.drop()
    await resumed.closed()


def get_column() -> list[object]:
    """(kind, caller, status): a stream follows the rules of get."""
    col = ACTIONS.index("get")
    return [
        pytest.param(kind, caller, row[col], id=f"{kind}-{caller}")
        for kind, table in (("public", PUBLIC), ("private", PRIVATE), ("missing", MISSING))
        for caller, row in table.items()
    ]


@pytest.mark.parametrize(("kind", "caller", "status"), get_column())
async def test_permission_matrix(harness: Harness, kind: str, caller: str, status: int) -> None:
    """Who may open a stream is who may get the counter; a refusal is the JSON error."""
    world = await make_world(harness, kind)
    stream = OpenStream(harness.app, "/v2/ws/c/stream", bearer(world.secrets.get(caller)))
    await stream.open()
    assert stream.status == status
    if status != 200:
        await stream.closed()
        assert stream.json()["code"] == str(status)
        return
    data = await stream.next_data()
    assert data["name"] == "c"
    stream.drop()
    await stream.closed()


@pytest.mark.parametrize(
    ("path", "status"),
    [("/v2/ws/%00/stream", 400), ("/v2/ws/c/stream/more", 404), ("/v2/ws/c/streams", 404)],
)
async def test_bad_paths(harness: Harness, path: str, status: int) -> None:
    """Bad names and unknown routes are the usual JSON errors."""
    await counter(harness)
    r = await harness.get(path)
    assert r.status_code == status


async def test_bad_token_is_401(harness: Harness) -> None:
    """A malformed token is refused before anything is read."""
    await counter(harness)
    stream = await OpenStream(harness.app, "/v2/ws/c/stream", bearer("tly_nope")).open()
    await stream.closed()
    assert stream.status == 401


async def test_streams_per_client_are_bounded(make_harness: HarnessFactory) -> None:
    """One stream more than TALLY_STREAMS_PER_CLIENT from one address is a clear 429;
    other addresses are not affected, and a closed stream frees its place."""
    h = await make_harness(streams_per_client=2)
    await counter(h)
    held = [await OpenStream(h.app, "/v2/ws/c/stream").open() for _ in range(2)]
    refused = await OpenStream(h.app, "/v2/ws/c/stream").open()
    await refused.closed()
    assert refused.status == 429
    assert "2 streams are open from your address" in refused.json()["message"]
    assert refused.response_headers[b"retry-after"] == b"2"
    elsewhere = await OpenStream(h.app, "/v2/ws/c/stream", client=("203.0.113.9", 1)).open()
    assert elsewhere.status == 200
    held[0].drop()
    await held[0].closed()
    again = await OpenStream(h.app, "/v2/ws/c/stream").open()
    assert again.status == 200
    for stream in (held[1], elsewhere, again):
        stream.drop()
        await stream.closed()


async def test_streams_per_client_count_an_ipv6_network(make_harness: HarnessFactory) -> None:
    """The addresses of one IPv6 /64 are one client for TALLY_STREAMS_PER_CLIENT."""
    h = await make_harness(streams_per_client=2)
    await counter(h)
    held = [
        await OpenStream(h.app, "/v2/ws/c/stream", client=(f"2001:db8:1:2::{i}", 1)).open()
        for i in (1, 2)
    ]
    refused = await OpenStream(h.app, "/v2/ws/c/stream", client=("2001:db8:1:2::3", 1)).open()
    await refused.closed()
    assert refused.status == 429
    other = await OpenStream(h.app, "/v2/ws/c/stream", client=("2001:db8:1:3::1", 1)).open()
    assert [s.status for s in (*held, other)] == [200, 200, 200]
    for stream in (*held, other):
        stream.drop()
        await stream.closed()


async def test_streams_per_node_are_bounded(make_harness: HarnessFactory) -> None:
    """One stream more than TALLY_STREAMS_PER_NODE, from anyone, is a 429."""
    h = await make_harness(streams_per_node=3)
    await counter(h)
    held = [
        await OpenStream(h.app, "/v2/ws/c/stream", client=(f"203.0.113.{i}", 1)).open()
        for i in range(3)
    ]
    refused = await OpenStream(h.app, "/v2/ws/c/stream", client=("203.0.113.99", 1)).open()
    await refused.closed()
    assert refused.status == 429
    assert "this server has 3 streams open" in refused.json()["message"]
    for stream in held:
        stream.drop()
        await stream.closed()


async def test_stopping_ends_the_streams(make_harness: HarnessFactory) -> None:
    """Shutdown ends open streams cleanly (the response is completed) and is not held."""
    h = await make_harness()
    await counter(h)
    streams = [await OpenStream(h.app, "/v2/ws/c/stream").open() for _ in range(3)]
    for stream in streams:
        await stream.next_data()
    await h.app.shutdown()
    for stream in streams:
        await stream.closed(within=2.0)
        assert stream.ended


async def test_a_revoked_token_ends_the_stream(make_harness: HarnessFactory) -> None:
    """A private counter's stream ends at its next change once its token is revoked,
    with the `end` event saying why and without the new value."""
    h = await make_harness(token_cache_ttl=0.05)
    ws = await h.workspace("ws")
    await h.counter(ws, "c", private=True)
    reader = await h.token(ws, Permission.READ)
    writer = await h.token(ws, Permission.WRITE)
    stream = await OpenStream(h.app, "/v2/ws/c/stream", bearer(reader)).open()
    await stream.next_data()
    tokens = await h.store.list_tokens(ws.id)
    await h.store.revoke_token(tokens[0].id)
    await asyncio.sleep(0.1)
    assert (await h.get("/v2/ws/c/up", writer)).status_code == 200
    end = await stream.next_event()  # ended, without the new value
    assert end is not None
    assert (end.name, end.data) == (
        "end",
        {"code": "401", "message": "invalid or revoked token", "reason": "unauthorized"},
    )
    assert await stream.next_event() is None
    await stream.closed()


HEARTBEAT = 0.5  # the heartbeat of the tests below: quiet streams are checked this often
CACHE_TTL = 0.05


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("revoke", "unauthorized"),
        ("delete", "not_found"),
        ("private", "not_found"),
        ("recreate", "replaced"),
    ],
)
async def test_a_quiet_stream_ends_within_one_heartbeat(
    make_harness: HarnessFactory, change: str, reason: str
) -> None:
    """With no change of its counts, a stream whose access ended (its token revoked, its
    counter deleted, made private, or deleted and created again under its name) ends
    within one heartbeat (plus the cache's TTL), with the `end` event giving the reason."""
    h = await make_harness(stream_heartbeat=HEARTBEAT, token_cache_ttl=CACHE_TTL)
    ws = await h.workspace("ws")
    c = await h.counter(ws, "c")
    reader = await h.token(ws, Permission.READ)
    anonymous = change in ("private", "recreate")  # a Read token may still read it private
    stream = OpenStream(h.app, "/v2/ws/c/stream", [] if anonymous else bearer(reader))
    await stream.open()
    await stream.next_data()
    await asyncio.sleep(HEARTBEAT * 1.5)  # a heartbeat went by: the stream was fine then
    if change == "revoke":
        await h.store.revoke_token((await h.store.list_tokens(ws.id))[0].id)
    elif change == "private":
        await h.store.change_counter(c.id, CounterChange(private=True))
    else:
        await h.store.delete_counter(c.id)
        if change == "recreate":
            await h.counter(ws, "c")
    changed = time.monotonic()
    data, at = await stream.ended_with(within=HEARTBEAT * 2 + 10)
    jsonschema.validate(data, document()["components"]["schemas"]["StreamEnd"])
    assert data["reason"] == reason
    assert data["code"] == "401" if reason == "unauthorized" else "404"
    # one heartbeat, the cache's TTL, and a loaded machine's slack
    assert at - changed < HEARTBEAT + CACHE_TTL + 1.0, at - changed
    await stream.closed()
    assert h.app.services is not None
    assert h.app.services.streams.open == 0


async def test_a_stopping_server_ends_streams_saying_so(make_harness: HarnessFactory) -> None:
    """Shutdown ends each stream with the `end` event `stopping` (a 503)."""
    h = await make_harness()
    await counter(h)
    stream = await OpenStream(h.app, "/v2/ws/c/stream").open()
    await stream.next_data()
    await h.app.shutdown()
    data, _ = await stream.ended_with()
    assert (data["code"], data["reason"]) == ("503", "stopping")
    await stream.closed()


async def open_and_drop(h: Harness, n: int) -> None:
    """Open `n` streams, read each one's first event, then drop them all."""
    assert h.app.services is not None
    streams = [OpenStream(h.app, "/v2/ws/c/stream") for _ in range(n)]
    for stream in streams:
        await stream.open()
    for stream in streams:
        await stream.next_data(within=60)
    assert h.app.services.streams.open == n
    assert h.app.services.feed.watched == 1
    for stream in streams:
        stream.drop()
    for stream in streams:
        await stream.closed(within=30)


async def tasks_back_to(count: int, within: float = 10.0) -> bool:
    """Whether the loop's tasks come back to `count` within `within` s: short-lived ones
    (a batched read, a limiter timer) may be running at any one moment; a leak stays."""
    deadline = asyncio.get_running_loop().time() + within
    while len(asyncio.all_tasks()) > count:
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def tally_memory() -> int:
    """Bytes allocated now with a frame of Tally's code on the stack (the test's own
    client, timers included, left out), once the loop has settled."""
    for _ in range(5):
        await asyncio.sleep(0.05)
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, f"{TALLY_DIR}/*", all_frames=True)]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def test_a_thousand_dropped_streams_leave_nothing(make_harness: HarnessFactory) -> None:
    """1,000 streams opened and dropped: open streams, watchers and tasks come back to
    where they were, and what Tally's code holds does not grow (measured over a second
    round, after the first one warmed the caches)."""
    h = await make_harness(streams_per_client=1000, streams_per_node=1000, rate_limit=None)
    await counter(h)
    assert h.app.services is not None
    services = h.app.services
    tasks_before = len(asyncio.all_tasks())
    tracemalloc.start(12)
    try:
        await open_and_drop(h, 1000)
        first = await tally_memory()
        assert services.streams.open == 0
        assert services.feed.watched == 0
        assert await tasks_back_to(tasks_before)
        await open_and_drop(h, 1000)
        second = await tally_memory()
    finally:
        tracemalloc.stop()
    assert services.streams.open == 0
    assert services.feed.watched == 0
    assert await tasks_back_to(tasks_before)
    # a stream's own state is far more than 150 bytes (its task and wake-up event alone):
    # what may differ is the event loop's lazily shrunk room (ready queue, timer heap)
    assert second - first < 150_000, second - first


# across nodes --------------------------------------------------------------------------


@pytest.fixture
def scale_out(postgres_url: str, redis_prefix: str) -> Settings:
    return Settings(database_url=postgres_url, redis_url=require_redis(), redis_prefix=redis_prefix)


@pytest.mark.postgres
async def test_another_nodes_up_reaches_the_stream(scale_out: Settings) -> None:
    """Two nodes on one database and Redis: an up on B is an event on A's stream."""
    a, b = create_app(scale_out), create_app(scale_out)
    await a.startup()
    await b.startup()
    try:
        assert a.services is not None
        assert b.services is not None
        ws = await a.services.store.create_workspace("ws", "ws")
        await a.services.store.create_counter(ws.id, "c")
        await wait_for(lambda: a.services is not None and a.services.feed.remote)
        stream = await OpenStream(a, "/v2/ws/c/stream").open()
        await stream.next_data()
        view = await b.services.counters.count("ws", "c", None, 1, 0)
        data = await stream.next_data(within=5)
        assert data["up_count"] == view.up_count == 1
        stream.drop()
        await stream.closed()
    finally:
        await b.shutdown()
        await a.shutdown()


@pytest.mark.postgres
async def test_redis_outage_degrades_to_reads(scale_out: Settings) -> None:
    """With Redis cut, counting goes on and streams read every few seconds; when Redis
    is back, changes arrive through it again."""
    host, port = REDIS_URL.split("//")[1].split("/")[0].split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    settings = replace(scale_out, redis_url=f"redis://127.0.0.1:{proxy.port}/0")
    a, b = create_app(settings), create_app(settings)
    await a.startup()
    await b.startup()
    try:
        assert a.services is not None
        assert b.services is not None
        a.services.streams.poll_interval = 0.5
        ws = await a.services.store.create_workspace("ws", "ws")
        await a.services.store.create_counter(ws.id, "c")
        await wait_for(lambda: a.services is not None and a.services.feed.remote)
        stream = await OpenStream(a, "/v2/ws/c/stream").open()
        await stream.next_data()
        await proxy.cut()
        await wait_for(lambda: a.services is not None and not a.services.feed.remote)
        view = await b.services.counters.count("ws", "c", None, 1, 0)  # counting goes on
        assert view.up_count == 1
        data = await stream.next_data(within=10)  # read, not heard
        assert data["up_count"] == 1
        await proxy.start()
        await wait_for(lambda: a.services is not None and a.services.feed.remote)
        await wait_for(lambda: b.services is not None and b.services.feed.remote)
        a.services.streams.poll_interval = 3600  # from now on only Redis can tell
        await b.services.counters.count("ws", "c", None, 1, 0)
        data = await stream.next_data(within=10)
        assert data["up_count"] == 2
        stream.drop()
        await stream.closed()
    finally:
        await b.shutdown()
        await a.shutdown()
        await proxy.cut()


@pytest.mark.parametrize("in_flight", [0, 1, 2, 5, 10, 50])
async def test_a_closing_bus_stops_its_tasks_without_cancelling_them(
    redis_prefix: str, in_flight: int
) -> None:
    """Closing a node's Redis bus with a publish just started (after `in_flight` loop
    turns): both of its tasks end by themselves, none is cancelled (redis-py can swallow
    a cancellation that lands in a command, which left the publisher waiting out the
    close bound, 2 s, at every shutdown). Another node hears only real changes: the
    closing node's wake-up message counts as nothing there."""
    url = require_redis()
    closing, other, third = (RedisBus(url, redis_prefix) for _ in range(3))
    feeds = [ChangeFeed(bus, shared_store=True) for bus in (closing, other, third)]
    for feed in feeds:
        feed.start()
    try:
        await wait_for(lambda: all(feed.remote for feed in feeds))
        tasks = list(closing._tasks)
        closing.publish([1])
        for _ in range(in_flight):
            await asyncio.sleep(0)
        await closing.close()
        assert len(tasks) == 2
        assert all(t.done() and not t.cancelled() for t in tasks), tasks
        heard = asyncio.Event()
        feeds[1].watch(2, heard)
        third.publish([2])  # after everything `closing` sent, on the same channel
        await asyncio.wait_for(heard.wait(), 15)
        assert other.received == closing.published + 1
    finally:
        for feed in feeds:
            await feed.close()
