"""Stopping an app while requests are inside it."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import Harness
from services import TcpProxy

from tally.config import Settings
from tally.models import Permission
from tally.storage import store_from_url
from tally.web.app import create_app


@pytest.mark.postgres
@pytest.mark.parametrize("durability", ["commit", "buffered"])
async def test_a_request_inside_at_shutdown_is_answered_truthfully(
    postgres_url: str, durability: str
) -> None:
    """An up held inside the app (its token lookup stalled on the network) when shutdown
    begins: shutdown lets it finish before the last flush, so its 200 is in the database
    afterwards; a request arriving after the stop began gets 503."""
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = postgres_url.replace(target.netloc, f"{target.username}@127.0.0.1:{proxy.port}")
    app = create_app(Settings(database_url=url, durability=durability, rate_limit=None))
    await app.startup()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("198.51.100.7", 40000)),
        base_url="http://tally.test",
    )
    try:
        h = Harness(app, client)
        ws = await h.workspace()
        token = await h.token(ws, Permission.WRITE)
        await h.counter(ws, "c")
        assert (await h.get("/v2/ws/c/up", token)).status_code == 200
        other = await h.token(ws, Permission.WRITE)  # not cached: looked up in the database
        proxy.stall()
        inside = asyncio.get_running_loop().create_task(h.get("/v2/ws/c/up", other))
        await asyncio.sleep(0.3)
        assert not inside.done()  # held in the token lookup
        stopping = asyncio.get_running_loop().create_task(app.shutdown())
        await asyncio.sleep(0.3)
        late = await h.get("/v2/ws/c/up", token)
        assert late.status_code == 503
        proxy.resume()
        answer = await inside
        await stopping
    finally:
        proxy.resume()
        await client.aclose()
        await app.shutdown()
        await proxy.cut()
    assert answer.status_code == 200, answer.text  # it was let finish
    store = store_from_url(postgres_url)
    await store.open()
    try:
        counter = await store.read_counter("ws", "c")
        assert counter is not None
        assert counter.up_count == 2
    finally:
        await store.close()
