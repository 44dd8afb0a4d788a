"""The alert deliverer's life (tally.deliveries): it stops when asked, whatever it was
waiting for."""

from __future__ import annotations

import asyncio
import time

from tally import alerts, webhooks
from tally.deliveries import Deliveries
from tally.storage import Store


async def test_stop_right_after_a_commit_wakes_it_ends_it(store: Store) -> None:
    """A server's shutdown commits its last batch (which wakes the deliverer) and stops
    the deliverer in the same turn of the loop. On Python 3.11 the cancel alone was
    swallowed by the deliverer's asyncio.wait_for, whose wait had just finished: the
    deliverer went on looking every interval and the shutdown never ended."""
    ws = await store.create_workspace("ws", "ws")
    hook = await store.create_webhook(
        ws.id, "https://hooks.example.com/h", webhooks.new_secret(), "", time.time(),
        limit=alerts.MAX_WEBHOOKS,
    )  # fmt: skip
    await store.create_alert_rule(
        ws.id,
        None,
        "above",
        10,
        webhook_id=hook.id,
        email=None,
        now=time.time(),
        limit=alerts.MAX_RULES,
    )  # fmt: skip (a rule: commits wake the deliverer)
    deliveries = Deliveries(store, None, interval=30.0)
    deliveries.start()
    for _ in range(50):  # until it waits for its next look
        await asyncio.sleep(0.01)
    task = deliveries._task
    assert task is not None
    deliveries.on_commit(None)
    started = time.monotonic()
    await asyncio.wait_for(deliveries.stop(), 5)
    assert task.done(), "the deliverer runs on after its stop"
    assert time.monotonic() - started < 2
