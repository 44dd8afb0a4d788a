"""The Store contract for alerts (issue 24 part 2): rules fire into the outbox in the
transaction of the change that crossed, once per crossing; firings are leased to one
node; every backend."""

from __future__ import annotations

import asyncio
import time

from test_store_contract import batch, two_nodes

from tally.models import CounterDelta
from tally.storage import Store

# an hour after this one: later than any counter's creation
NOW = (time.time() // 3600 + 1) * 3600 + 10


def up(n: int, down: int = 0, at: float = NOW) -> CounterDelta:
    return CounterDelta(n, down, False, at)


async def rule(store: Store, ws: int, counter: int | None, kind: str, threshold: int) -> int:
    hook = await store.create_webhook(ws, "http://127.0.0.1:9/h", "whsec_x", "", 1.0)
    made = await store.create_alert_rule(
        ws, counter, kind, threshold, webhook_id=hook.id, email=None, now=1.0
    )
    return made.id


async def fired(store: Store, ws: int) -> list[tuple[str, int, int, int]]:
    return [
        (f.kind, f.threshold, f.value_before, f.value)
        for f in reversed(await store.list_firings(ws))
    ]


async def test_a_threshold_fires_once_per_crossing(store: Store) -> None:
    """`above` fires when the committed value reaches the threshold from below, `below`
    when it reaches it from above; staying past it, or a batch that crosses nothing, fires
    nothing."""
    ws = await store.create_workspace("ws", "ws")
    c = await store.create_counter(ws.id, "c")
    await rule(store, ws.id, c.id, "above", 10)
    await rule(store, ws.id, c.id, "below", 3)
    await store.apply(batch(1, (c.id, up(9))))  # 0 -> 9
    assert await fired(store, ws.id) == []
    await store.apply(batch(2, (c.id, up(2))))  # 9 -> 11: crosses 10
    await store.apply(batch(3, (c.id, up(5))))  # 11 -> 16: already above
    await store.apply(batch(4, (c.id, up(0, 13))))  # 16 -> 3: reaches 3 from above
    await store.apply(batch(5, (c.id, up(7))))  # 3 -> 10: reaches 10 again
    await store.apply(batch(5, (c.id, up(7))))  # a retry of batch 5: not applied again
    assert await fired(store, ws.id) == [
        ("above", 10, 9, 11),
        ("below", 3, 16, 3),
        ("above", 10, 3, 10),
    ]
    other = await store.create_counter(ws.id, "other")
    await store.apply(batch(6, (other.id, up(50))))
    assert len(await fired(store, ws.id)) == 3  # a rule of c only


async def test_a_workspace_rule_watches_every_counter_even_new_ones(store: Store) -> None:
    """A rule for any counter fires for counters that exist and for those created after
    it; deleting it stops both."""
    ws = await store.create_workspace("ws", "ws")
    old = await store.create_counter(ws.id, "old")
    rule_id = await rule(store, ws.id, None, "above", 5)
    new = await store.ensure_counter(ws.id, "new")
    await store.apply(batch(1, (old.id, up(5)), (new.id, up(6))))
    firings = await store.list_firings(ws.id)
    assert sorted(f.counter_name for f in firings) == ["new", "old"]
    assert {f.workspace_slug for f in firings} == {"ws"}
    assert await store.delete_alert_rule(ws.id, rule_id)
    await store.apply(batch(2, (old.id, up(0, 5)), (new.id, up(0, 6))))
    await store.apply(batch(3, (old.id, up(5)), (new.id, up(6))))
    assert len(await store.list_firings(ws.id)) == 2


async def test_a_rate_rule_fires_once_an_hour(store: Store) -> None:
    """`rate` fires when the events of one UTC hour pass the threshold, once that hour,
    and again in another hour."""
    ws = await store.create_workspace("ws", "ws")
    c = await store.create_counter(ws.id, "c")
    await rule(store, ws.id, c.id, "rate", 5)
    await store.apply(batch(1, (c.id, up(3, 2))))  # 5 events: not more than 5
    assert await fired(store, ws.id) == []
    await store.apply(batch(2, (c.id, up(1))))  # the 6th
    await store.apply(batch(3, (c.id, up(10))))
    assert len(await fired(store, ws.id)) == 1
    await store.apply(batch(4, (c.id, up(6, at=NOW + 3600))))  # the next hour
    assert len(await fired(store, ws.id)) == 2


async def test_a_quiet_rule_fires_once_per_spell_across_nodes(store_url: str) -> None:
    """`quiet` fires once a counter has not changed for its duration, once per quiet
    spell however many nodes sweep at once, and again after a change and a new spell."""
    async with two_nodes(store_url) as (one, two):
        ws = await one.create_workspace("ws", "ws")
        c = await one.create_counter(ws.id, "c")
        t = time.time() + 10
        await one.apply(batch(1, (c.id, up(1, at=t))))
        await rule(one, ws.id, c.id, "quiet", 60)
        assert await one.sweep_quiet(t + 30) == 0  # 30 s: not yet
        swept = await asyncio.gather(*(s.sweep_quiet(t + 100) for s in (one, two, one, two)))
        assert sum(swept) == 1
        assert await one.sweep_quiet(t + 5000) == 0  # the same spell
        await one.apply(batch(2, (c.id, up(1, at=t + 6000))))
        assert await two.sweep_quiet(t + 6100) == 1
        assert [f.kind for f in await one.list_firings(ws.id)] == ["quiet", "quiet"]


async def test_a_firing_is_leased_to_one_node(store_url: str) -> None:
    """Due firings are claimed by one node each, even when both claim at once; a lease
    that runs out (a dead node) or is released (a restart) lets them be claimed again,
    with the same event id; a finished one is not claimed again."""
    async with two_nodes(store_url) as (one, two):
        ws = await one.create_workspace("ws", "ws")
        counters = [await one.create_counter(ws.id, f"c{i}") for i in range(30)]
        await rule(one, ws.id, None, "above", 1)
        await one.apply(batch(1, *((c.id, up(1)) for c in counters)))
        now = time.time() + 1
        claims = await asyncio.gather(
            *(s.claim_firings(s.node, now, 60, 10) for s in (one, two, one, two))
        )
        ids = [f.id for claim in claims for f in claim]
        assert len(ids) == len(set(ids)) == 30
        assert await one.claim_firings("one", now, 60, 100) == []
        held_by_two = sum(len(c) for c in claims[1::2])
        if one.dialect == "sqlite":  # one server per file: a starting one frees them all
            assert await two.release_firings("two") == 30
            assert len(await one.claim_firings("one", now, 60, 100)) == 30
        else:
            assert await two.release_firings("two") == held_by_two
            again = await one.claim_firings("one", now, 60, 100)
            assert {f.event_id for f in again} <= {f.event_id for c in claims for f in c}
            assert len(again) == held_by_two
        later = await two.claim_firings("two", now + 61, 60, 100)  # every lease ran out
        assert len(later) == 30
        for f in later:
            await two.finish_firing(
                f,
                "two",
                started_at=now,
                latency=0.01,
                status=204,
                error="",
                response="",
                state=1,
                next_at=now,
            )
        assert await one.claim_firings("one", now + 200, 60, 100) == []
        assert await one.next_firing_at() is None
        first = later[0]
        attempts = await one.list_attempts(first.id)
        assert [(a.status, a.node) for a in attempts] == [(204, "two")]
        assert await one.resend_firing(ws.id, first.id, now)
        assert [f.event_id for f in await one.claim_firings("one", now + 1, 60, 100)] == [
            first.event_id
        ]
        assert not await one.resend_firing(ws.id + 1, first.id, now)
        assert await two.prune_firings(time.time() - 3600) == 0  # too young
        assert await two.prune_firings(time.time() + 1, limit=5) == 5  # settled ones only
        assert await two.prune_firings(time.time() + 1) == 24  # the resent one is pending
        assert [f.id for f in await one.list_firings(ws.id)] == [first.id]
