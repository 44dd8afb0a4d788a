"""The dashboard's store methods (storage/dashboard.py) on every backend."""

from __future__ import annotations

import asyncio
import time

import pytest

from tally.errors import Conflict
from tally.models import BatchChanges, CounterDelta, Permission, Role
from tally.storage import Store


async def test_email_is_unique_in_any_letter_case(store: Store) -> None:
    """Two accounts cannot share an email, whatever its letter case; lookups ignore case."""
    a = await store.create_account("Ann@Example.com", "h", time.time())
    with pytest.raises(Conflict):
        await store.create_account("ann@example.COM", "h", time.time())
    found = await store.find_account("ANN@example.com")
    assert found is not None
    assert found.id == a.id
    assert found.email == "Ann@Example.com"
    assert not found.verified
    await store.mark_verified(a.id, time.time())
    again = await store.get_account(a.id)
    assert again is not None
    assert again.verified
    assert await store.count_accounts() == 1


async def test_sessions_expire_and_end(store: Store) -> None:
    """A session is found by its hash until it expires or is deleted."""
    a = await store.create_account("a@x.io", "h", time.time())
    now = time.time()
    await store.create_session("s1", a.id, now, now + 60)
    await store.create_session("s2", a.id, now, now + 60)
    session = await store.find_session("s1", now)
    assert session is not None
    assert session.account.id == a.id
    assert await store.find_session("s1", now + 61) is None
    await store.delete_session("s1")
    assert await store.find_session("s1", now) is None
    assert await store.delete_sessions(a.id) == 1
    assert await store.find_session("s2", now) is None


async def test_one_time_tokens_are_single_use_and_expire(store: Store) -> None:
    """A link is used once; a used or expired one is refused."""
    a = await store.create_account("a@x.io", "h", time.time())
    now = time.time()
    await store.create_one_time("verify", "h1", now, now + 60, account_id=a.id)
    await store.create_one_time("reset", "h2", now, now + 60, account_id=a.id)
    assert await store.use_one_time("reset", "h1", now) is None  # wrong purpose
    assert await store.peek_one_time("verify", "h1", now) is not None
    used = await store.use_one_time("verify", "h1", now)
    assert used is not None
    assert used.account_id == a.id
    assert await store.use_one_time("verify", "h1", now) is None
    assert await store.use_one_time("reset", "h2", now + 61) is None


async def test_members_roles_and_owner_id(store: Store) -> None:
    """Members have roles; the workspace's owner_id (the API's user_id) is its first owner."""
    ws = await store.create_workspace("ws", "WS")
    a = await store.create_account("a@x.io", "h", time.time())
    b = await store.create_account("b@x.io", "h", time.time())
    await store.add_member(ws.id, b.id, Role.OWNER, time.time())
    await store.add_member(ws.id, a.id, Role.VIEWER, time.time())
    assert await store.member_role(ws.id, a.id) is Role.VIEWER
    await store.add_member(ws.id, a.id, Role.EDITOR, time.time())
    assert [(m.email, m.role) for m in await store.list_members(ws.id)] == [
        ("a@x.io", Role.EDITOR),
        ("b@x.io", Role.OWNER),
    ]
    counter = await store.create_counter(ws.id, "c")
    assert counter.owner_id == b.id
    assert [m.workspace.slug for m in await store.memberships(a.id)] == ["ws"]
    assert await store.remove_member(ws.id, a.id)
    assert await store.member_role(ws.id, a.id) is None


async def _counted(store: Store, ws_id: int, name: str, seq: int) -> int:
    c = await store.create_counter(ws_id, name)
    hour = int(time.time() // 3600)
    await store.apply(
        BatchChanges(seq, {c.id: CounterDelta(3, 1, False, time.time())}, {(c.id, hour): [3, 1]})
    )
    return c.id


async def test_deleting_a_counter_deletes_its_history(store: Store) -> None:
    """delete_counter removes the counter and its hourly buckets; others stay."""
    ws = await store.create_workspace("ws", "ws")
    gone = await _counted(store, ws.id, "gone", 1)
    kept = await _counted(store, ws.id, "kept", 2)
    assert await store.delete_counter(gone)
    assert await store.get_counter_by_id(gone) is None
    assert (await store.read_history(gone)).buckets == []
    assert len((await store.read_history(kept)).buckets) == 1
    assert not await store.delete_counter(gone)


async def test_deleting_a_workspace_deletes_everything_in_it(store: Store) -> None:
    """delete_workspace takes its counters, their history, tokens, members and invites."""
    ws = await store.create_workspace("ws", "ws")
    other = await store.create_workspace("other", "other")
    a = await store.create_account("a@x.io", "h", time.time())
    await store.add_member(ws.id, a.id, Role.OWNER, time.time())
    counter = await _counted(store, ws.id, "c", 1)
    kept = await _counted(store, other.id, "c", 2)
    await store.create_token(ws.id, "t", "tly_x", "hash-ws", Permission.ADMIN)
    await store.create_one_time("invite", "inv", time.time(), time.time() + 60, workspace_id=ws.id)
    assert await store.delete_workspace(ws.id)
    assert await store.get_workspace("ws") is None
    assert await store.get_counter_by_id(counter) is None
    assert (await store.read_history(counter)).buckets == []
    assert await store.find_token("hash-ws") is None
    assert await store.memberships(a.id) == []
    assert await store.peek_one_time("invite", "inv", time.time()) is None
    assert len((await store.read_history(kept)).buckets) == 1


async def test_counter_page_searches_sorts_and_pages(store: Store) -> None:
    """counter_page: case-insensitive search (wildcards literal), sort keys, pages, total."""
    ws = await store.create_workspace("ws", "ws")
    for name in ["Beta", "alpha", "gamma_1", "gamma%2", "delta"]:
        await store.create_counter(ws.id, name)
    page = await store.counter_page(ws.id, limit=2)
    assert page.total == 5
    assert [c.name for c in page.counters] == ["Beta", "alpha"]  # code point order
    page2 = await store.counter_page(ws.id, limit=2, offset=2)
    assert [c.name for c in page2.counters] == ["delta", "gamma%2"]
    found = await store.counter_page(ws.id, search="GAMMA")
    assert found.total == 2
    assert [c.name for c in (await store.counter_page(ws.id, search="_")).counters] == ["gamma_1"]
    assert [c.name for c in (await store.counter_page(ws.id, search="%")).counters] == ["gamma%2"]
    desc = await store.counter_page(ws.id, sort="name", descending=True, limit=1)
    assert desc.counters[0].name == "gamma_1"
    await _counted(store, ws.id, "zeta", 1)
    top = await store.counter_page(ws.id, sort="up", descending=True, limit=1)
    assert top.counters[0].name == "zeta"


async def test_token_expiry_and_last_use(store: Store) -> None:
    """Tokens keep an optional expiry and the time of their last use."""
    ws = await store.create_workspace("ws", "ws")
    t = await store.create_token(ws.id, "t", "tly_x", "hash", Permission.WRITE, 1000.0)
    assert t.expires_at == 1000.0
    assert t.last_used_at is None
    assert not t.usable(1001.0)
    assert t.usable(999.0)
    await store.touch_token(t.id, 1234.5)
    found = await store.find_token("hash")
    assert found is not None
    assert found.last_used_at == 1234.5


async def test_rename_workspace(store: Store) -> None:
    """rename_workspace changes the display name, not the slug."""
    ws = await store.create_workspace("ws", "old")
    await store.rename_workspace(ws.id, "new")
    again = await store.get_workspace_by_id(ws.id)
    assert again is not None
    assert (again.slug, again.name) == ("ws", "new")


async def test_a_deleted_counters_id_is_never_reused(store: Store) -> None:
    """After the newest counter is deleted, the next one gets a new id (a count in flight
    for the deleted one can never land on it)."""
    ws = await store.create_workspace("ws", "ws")
    first = await store.create_counter(ws.id, "a")
    last = await store.create_counter(ws.id, "b")
    assert await store.delete_counter(last.id)
    again = await store.create_counter(ws.id, "c")
    assert again.id > last.id > first.id


async def _owners(store: Store, ws_id: int) -> list[int]:
    return [m.account_id for m in await store.list_members(ws_id) if m.role is Role.OWNER]


async def test_the_last_owner_stays_when_owners_leave_at_once(store: Store) -> None:
    """Two owners leaving, stepping down, or one of each, at the same moment, 16 times:
    one of them stays owner every time (the other's change is refused, False)."""
    accounts = [await store.create_account(f"o{i}@x.io", "h", time.time()) for i in range(2)]
    a, b = (x.id for x in accounts)

    async def move(kind: str, ws_id: int, who: int) -> bool:
        if kind == "leave":
            return await store.remove_member(ws_id, who)
        return await store.set_member_role(ws_id, who, Role.VIEWER)

    for trial in range(16):
        ws = await store.create_workspace(f"ws{trial}", "ws")
        for who in (a, b):
            await store.add_member(ws.id, who, Role.OWNER, time.time())
        first, second = [("leave", "leave"), ("step down", "step down"), ("leave", "step down")][
            trial % 3
        ]
        done = await asyncio.gather(move(first, ws.id, a), move(second, ws.id, b))
        assert sorted(done) == [False, True], (trial, first, second)
        assert len(await _owners(store, ws.id)) == 1
        [owner] = await _owners(store, ws.id)
        counter = await store.create_counter(ws.id, "c")
        assert counter.owner_id == owner  # the API's user_id follows


async def test_member_changes_keep_an_owner(store: Store) -> None:
    """The last owner can neither leave nor step down; another owner or member can; a
    non-member changes nothing (False)."""
    ws = await store.create_workspace("ws", "ws")
    a, b, c = [await store.create_account(f"{n}@x.io", "h", time.time()) for n in "abc"]
    await store.add_member(ws.id, a.id, Role.OWNER, time.time())
    await store.add_member(ws.id, b.id, Role.EDITOR, time.time())
    assert not await store.remove_member(ws.id, a.id)
    assert not await store.set_member_role(ws.id, a.id, Role.EDITOR)
    assert await store.member_role(ws.id, a.id) is Role.OWNER
    assert not await store.remove_member(ws.id, c.id)
    assert not await store.set_member_role(ws.id, c.id, Role.OWNER)
    assert await store.set_member_role(ws.id, b.id, Role.OWNER)
    assert await store.set_member_role(ws.id, a.id, Role.VIEWER)
    assert await store.remove_member(ws.id, a.id)
    assert await _owners(store, ws.id) == [b.id]


async def test_only_the_first_account_owns_the_bootstrap_workspace(store: Store) -> None:
    """Eight accounts made and claiming `default` at once: exactly one owns it; a later
    account never does, even of a workspace without members."""
    ws = await store.create_workspace("default", "default")

    async def sign_up(i: int) -> bool:
        account = await store.create_account(f"first{i}@x.io", "h", time.time())
        return await store.claim_bootstrap("default", account.id, time.time())

    claimed = await asyncio.gather(*(sign_up(i) for i in range(8)))
    assert sum(claimed) == 1
    assert len(await store.list_members(ws.id)) == 1
    await store.create_workspace("spare", "spare")
    late = await store.create_account("late@x.io", "h", time.time())
    assert not await store.claim_bootstrap("spare", late.id, time.time())
    assert not await store.claim_bootstrap("default", late.id, time.time())
