"""GET /healthz (the process answers) and GET /readyz (it can serve: the database answers
within READY_TIMEOUT).

Neither is rate-limited nor logged: orchestrators and balancers ask every few seconds.
A failing readiness check answers 503 in the error shape with the checks that failed.

Redis (scale-out) is checked and reported, but a Redis that does not answer does not
make the node unready: every node then counts on with its own rate limiter (and live
streams poll the store), so a balancer pulling every node at once because Redis is down
would turn a degraded cluster into a dead one. Its check then reads "degraded: ...".
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from tally.errors import StorageError
from tally.web.http import Send, error_body, send_json

if TYPE_CHECKING:
    from tally.web.app import Services

READY_TIMEOUT = 2.0  # seconds each dependency has to answer
# dependencies the node serves without (reported, but the node stays ready)
DEGRADABLE = ("redis",)


async def check(probe: Coroutine[Any, Any, object], within: float) -> str:
    """ "ok", or why the dependency did not answer in time. The answer never waits longer
    than `within`: a probe still running then is cancelled but not waited for (a driver
    may take its own time to give up)."""
    task = asyncio.ensure_future(probe)
    done, _ = await asyncio.wait((task,), timeout=within)
    if not done:
        task.cancel()
        task.add_done_callback(_retrieve)
        return f"no answer within {within:g} s"
    exc = task.exception()
    if exc is None:
        return "ok"
    if isinstance(exc, StorageError):
        return str(exc) or type(exc).__name__
    return repr(exc)  # whatever fails the probe, the node cannot serve


def _retrieve(task: asyncio.Future[object]) -> None:
    if not task.cancelled():
        task.exception()


async def readiness(services: Services | None, redis: bool, within: float) -> dict[str, str]:
    """Each dependency's state, checked at once; {"server": ...} while starting or stopping.
    `redis`: the rate limit is shared through Redis."""
    if services is None:
        return {"server": "starting or stopping"}
    probes: dict[str, Coroutine[Any, Any, object]] = {"store": services.store.schema_version()}
    if redis and services.api.limiter is not None:
        probes["redis"] = services.api.limiter.ping()
    names = list(probes)
    results = await asyncio.gather(*(check(probes[n], within) for n in names))
    checks = dict(zip(names, results, strict=True))
    for name in DEGRADABLE:
        if checks.get(name, "ok") != "ok":
            checks[name] = f"degraded: {checks[name]}"
    return checks


async def send_health(send: Send) -> None:
    await send_json(send, 200, {"status": "ok"})


async def send_readiness(send: Send, services: Services | None, redis: bool) -> None:
    checks = await readiness(services, redis, READY_TIMEOUT)
    failed = {
        name: state for name, state in checks.items() if state != "ok" and name not in DEGRADABLE
    }
    if not failed:
        await send_json(send, 200, {"status": "ready", "checks": checks})
        return
    message = "not ready: " + "; ".join(f"{name}: {state}" for name, state in failed.items())
    await send_json(send, 503, {**error_body(503, message), "checks": checks})
