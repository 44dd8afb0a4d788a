"""/healthz and /readyz: alive, ready (the database and Redis answer in time), never
rate-limited."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from conftest import HarnessFactory
from services import TcpProxy, require_redis

from tally.config import RateLimit
from tally.web import health


async def test_alive_and_ready(make_harness: HarnessFactory) -> None:
    """Both answer 200; readiness lists what it checked."""
    h = await make_harness()
    r = await h.client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    r = await h.client.get("/readyz")
    assert r.status_code == 200, r.text
    expected = {"store": "ok"}
    if h.app.settings.redis_url:
        expected["redis"] = "ok"
    assert r.json() == {"status": "ready", "checks": expected}


async def test_not_rate_limited(make_harness: HarnessFactory) -> None:
    """A limit of 1 a minute does not touch the probes: no 429, no rate-limit headers."""
    h = await make_harness(rate_limit=RateLimit(1, 60.0))
    for _ in range(5):
        for path in ("/healthz", "/readyz"):
            r = await h.client.get(path)
            assert r.status_code == 200, r.text
            assert "x-ratelimit-limit" not in r.headers


async def test_not_ready_while_stopped(make_harness: HarnessFactory) -> None:
    """Once the app stopped, /readyz is 503 (in the error shape) and /healthz still 200."""
    h = await make_harness()
    await h.app.shutdown()
    r = await h.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["code"] == "503"
    assert r.json()["checks"] == {"server": "starting or stopping"}
    assert (await h.client.get("/healthz")).status_code == 200


@pytest.mark.postgres
async def test_silent_database_is_not_ready(
    make_harness: HarnessFactory, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database that holds every packet makes /readyz 503 within the bound."""
    monkeypatch.setattr(health, "READY_TIMEOUT", 0.5)
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = postgres_url.replace(target.netloc, f"{target.username}@127.0.0.1:{proxy.port}")
    try:
        h = await make_harness(database_url=url, redis_url=None)
        assert (await h.client.get("/readyz")).status_code == 200
        proxy.stall()
        started = time.monotonic()
        r = await h.client.get("/readyz")
        assert time.monotonic() - started < 8  # the bound (0.5 s), not the driver's 10 s
        assert r.status_code == 503
        assert r.json()["checks"]["store"] == "no answer within 0.5 s"
        assert "store: no answer" in r.json()["message"]
    finally:
        proxy.resume()
    assert (await h.client.get("/readyz")).status_code == 200
    await proxy.cut()


@pytest.mark.postgres
async def test_unreachable_redis_is_degraded_but_ready(
    make_harness: HarnessFactory, postgres_url: str, redis_prefix: str
) -> None:
    """In scale-out, a Redis that is gone is reported by /readyz, which stays 200: the node
    counts on with its own limiter, and a balancer must not pull every node at once."""
    target = urlsplit(require_redis())
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    # the test's own key prefix, also in its [sqlite] variant (whose settings have none)
    h = await make_harness(
        database_url=postgres_url,
        redis_url=f"redis://127.0.0.1:{proxy.port}/0",
        redis_prefix=redis_prefix,
    )
    assert (await h.client.get("/readyz")).status_code == 200
    await proxy.cut()
    r = await h.client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ready"
    assert r.json()["checks"]["store"] == "ok"
    assert r.json()["checks"]["redis"].startswith("degraded: ")
    await proxy.start()  # Redis is back on the same port
    assert (await h.client.get("/readyz")).json()["checks"]["redis"] == "ok"
    await proxy.cut()
