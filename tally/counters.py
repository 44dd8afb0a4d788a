"""Counter operations and the access rules, over a Store and the group commit.

Access rules (docs/api.md has the user-facing table):

- Public counters (the default): anyone may get, stats, up and down; a valid token never
  gives less than anonymous access. reset needs a Write token of the counter's workspace.
- Private counters: every action needs a token of the counter's workspace. Without one
  the answer is the 404 of a missing counter, so existence is not revealed; with one that
  lacks the permission, 403.
- up / down on a missing counter with a Write or Admin token of that workspace creates it
  (public); otherwise 404.
- up / down by more than 1 needs a Write token of the workspace; set needs Admin (and
  creates a missing counter, as up does with Write).
- An anonymous up / down (no token of the counter's workspace) of a counter with allowed
  origins must come from one of them (tally.origins), else 403.
- A counter with a floor or a ceiling takes every up / down / set as a checked change:
  one that would cross a bound is refused by the store at commit time (409), so the
  bounds hold exactly across nodes; these requests are answered after their commit,
  also in buffered mode.
- An anonymous up of a counter with a unique window (tally.visitors) counts once per
  visitor within the window; a later one in the window is answered with the current
  totals, `counted` false, and changes nothing. Ups with a Write or Admin token of the
  counter's workspace are the owner's own: never deduplicated. down is not affected.
- An anonymous up of a missing counter creates it (public) if its workspace counts page
  views (tally.pageviews) and the up comes from one of the workspace's allowed origins
  (it must have some), within the client's creation budget and the workspace's quota.
- V1 (the retired open-source API): see tally.namespaces.
"""

from __future__ import annotations

import asyncio
import math
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, tzinfo
from typing import Any

from tally import origins, periods
from tally.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    StorageError,
    TallyError,
    Unauthorized,
    Unavailable,
)
from tally.models import (
    CHECK_BOUNDS,
    UNCHECKED,
    BatchChanges,
    Counter,
    CounterChange,
    Permission,
    Token,
    Totals,
    Workspace,
)
from tally.ratelimit import Limiter
from tally.stats import add_temporal, settled_before, summarize
from tally.storage.base import NO_END, Store
from tally.visitors import LocalVisitors, Visitor, Visitors, by_address
from tally.writes import CounterGone, GroupCommit, Ticket

MAX_NAME = 128
MAX_BY = 1_000_000  # up / down ?by=
# seconds a change of bounds waits for this node's pending changes to commit (then 503)
PENDING_WAIT = 10.0
MAX_SET = 2**53 - 1  # a total set with set: still exact in JavaScript's numbers
# seconds the settled stats sums of a counter are reused (other nodes' late batches)
SETTLED_TTL = 300.0
# control characters, surrogates, line and paragraph separators; format characters such
# as the zero-width joiner are fine (emoji sequences use them)
_REFUSED = frozenset(("Cc", "Cs", "Zl", "Zp"))
# spaces and format characters (zero-width space, joiners, soft hyphen): fine inside a
# name, but not a whole name
_INVISIBLE = frozenset(("Zs", "Cf"))


def check_name(kind: str, name: str) -> str:
    """A workspace or counter name as it arrives in a URL, or BadRequest."""
    if not name:
        raise BadRequest(f"the {kind} name is empty")
    if len(name) > MAX_NAME:
        raise BadRequest(f"the {kind} name is longer than {MAX_NAME} characters")
    if "/" in name:
        raise BadRequest(f"the {kind} name must not contain '/'")
    if name in (".", ".."):
        # clients and proxies resolve /v2/ws/../up to /v2/up: such a counter could be
        # made by some clients and never reached by others
        raise BadRequest(f"the {kind} name must not be '.' or '..'")
    # isprintable() is the fast path; it also refuses unassigned and separator characters,
    # so only then look at the categories that are really refused
    if not name.isprintable() and any(unicodedata.category(ch) in _REFUSED for ch in name):
        raise BadRequest(f"the {kind} name must not contain control characters")
    # a name that shows as nothing, or as another name, in a link or a list: " ", "a ",
    # a zero-width space (the control characters of str.strip's set are refused above)
    if name[0].isspace() or name[-1].isspace():
        raise BadRequest(f"the {kind} name must not begin or end with a space")
    if not name.isascii() and all(unicodedata.category(ch) in _INVISIBLE for ch in name):
        raise BadRequest(f"the {kind} name must have a visible character")
    return name


class CounterView:
    """A counter as a client sees it: committed state plus this node's pending changes."""

    __slots__ = ("counted", "counter", "down_count", "up_count", "updated_at")

    def __init__(self, counter: Counter, up_count: int, down_count: int, updated_at: float):
        self.counter = counter
        self.up_count = up_count
        self.down_count = down_count
        self.updated_at = updated_at
        # an up of a counter with a unique window: did it count? (None: not such an up)
        self.counted: bool | None = None


class CounterCache:
    """What a node remembers of counters it looked up: (workspace, name) -> Counter, or
    None for a name that did not exist. Missing names are remembered like existing ones
    so that an anonymous lookup of a private counter costs exactly what a lookup of a
    missing one costs: neither its timing nor the cache tells whether it exists. Only the
    settings part (id, private, bounds, origins, ...) is used from it; counts always come
    from a fresh snapshot or from the commit.

    How long an entry is trusted depends on what the store knows (Store.settings_known):

    - exactly (both stores): an entry stays right while the store's settings epoch is
      the one it was read under, so it is kept until any change of settings, names or
      workspaces commits here, or another process or node is seen to have committed one;
      it is never older than `ttl` seconds past the store's last look for other
      processes' changes (SQLite looks with every write, PostgreSQL with every group
      commit, so under load an entry lives until a change, when idle `ttl` seconds);
    - not (a store whose settings_known is None): `ttl` seconds.

    At most `max_entries` names are kept, the least recently used dropped first, so
    memory stays bounded however many counters exist."""

    def __init__(
        self,
        ttl: float,
        known: Callable[[], tuple[int, float] | None] = lambda: None,
        max_entries: int = 100_000,
    ) -> None:
        self.ttl = ttl
        self.known = known
        self.max_entries = max_entries
        # key -> (epoch read under, monotonic time read, counter or None)
        self._entries: OrderedDict[tuple[str, str], tuple[int, float, Counter | None]] = (
            OrderedDict()
        )

    def epoch(self) -> int:
        """The store's settings epoch now (-1 if it has none): take it before a lookup
        whose result goes to `put`."""
        known = self.known()
        return -1 if known is None else known[0]

    def get(self, key: tuple[str, str], now: float) -> tuple[float, Counter | None] | None:
        """The entry (time read, counter or None if missing), or None if not cached or no
        longer trusted."""
        hit = self._entries.get(key)
        if hit is None:
            return None
        epoch, at, counter = hit
        known = self.known()
        if known is None:
            fresh = now < at + self.ttl
        else:
            fresh = epoch == known[0] and now < max(at, known[1]) + self.ttl
        if not fresh:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return at, counter

    def put(self, key: tuple[str, str], counter: Counter | None, now: float, epoch: int) -> None:
        """Remember a lookup made at `now` under the settings `epoch` (from `epoch()`,
        taken before it: a change committed meanwhile makes the entry stale at once)."""
        entries = self._entries
        entries[key] = (epoch, now, counter)
        entries.move_to_end(key)
        if len(entries) > self.max_entries:
            entries.popitem(last=False)

    def forget(self, key: tuple[str, str]) -> None:
        """Drop what this node remembers of the name (after a change of its settings, its
        creation or deletion here; other nodes see it within `ttl`)."""
        self._entries.pop(key, None)

    def forget_workspace(self, workspace: str) -> None:
        """Drop every name of the workspace (after a change of its settings here)."""
        for key in [k for k in self._entries if k[0] == workspace]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


class Creations:
    """Group commit of new counters: every name to create that arrives while a batch of
    them commits goes into the next one, and each batch is one `Store.ensure_counters`
    (one transaction, one fsync; the quota checked name by name in it). Before this,
    each new counter was a transaction of its own on the one writer, and an up of a new
    name ran at 0.15-0.18 x an up of an existing one (docs/performance.md). A name asked
    for twice while it waits is created once, both waiting for it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._open: dict[tuple[int, str], asyncio.Future[Counter]] = {}
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # committed (or failed) transactions
        self.created = 0  # names asked for in them

    async def ensure(self, workspace_id: int, name: str) -> Counter:
        """The counter (created if missing), or its error (QuotaReached, StorageError)."""
        key = (workspace_id, name)
        future = self._open.get(key)
        if future is None:
            future = self._open[key] = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieved)
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(
                    self._run(), name="tally-creations"
                )
        # shielded: a request that goes away does not cancel the others' counter
        return await asyncio.shield(future)

    async def _run(self) -> None:
        try:
            while self._open:
                batch, self._open = self._open, {}
                keys = list(batch)
                try:
                    results: (
                        list[Counter | Exception] | BaseException
                    ) = await self.store.ensure_counters(keys)
                except Exception as exc:  # the flusher's rule: this task must not die
                    results = (
                        exc
                        if isinstance(exc, (TallyError, StorageError))
                        else StorageError(repr(exc))
                    )
                except BaseException:  # cancelled (the loop is closing): no one may hang
                    for future in batch.values():
                        future.set_exception(StorageError("the server is stopping"))
                    raise
                self.batches += 1
                self.created += len(keys)
                for i, key in enumerate(keys):
                    got = results if isinstance(results, BaseException) else results[i]
                    future = batch[key]
                    if isinstance(got, BaseException):
                        future.set_exception(got)
                    else:
                        future.set_result(got)
        finally:
            self._task = None


def _retrieved(future: asyncio.Future[Counter]) -> None:
    """Mark a failed creation's error as seen: its request may be gone."""
    if not future.cancelled():
        future.exception()


def bound_error(counter: Counter, up: int, down: int) -> Conflict:
    if up and counter.ceiling is not None:
        crossed = f"ceiling of {counter.ceiling}"
    elif down and counter.floor is not None:
        crossed = f"floor of {counter.floor}"
    else:
        crossed = "bounds"
    return Conflict(f"this would cross the counter's {crossed}: nothing was counted")


class Counters:
    def __init__(
        self, store: Store, writes: GroupCommit, tz: tzinfo = UTC, cache_ttl: float = 1.0
    ) -> None:
        self.store = store
        self.writes = writes
        self.tz = tz
        self.commit = writes.durability == "commit"
        self.cache = CounterCache(cache_ttl, store.settings_known)
        # the unique visitors' seen-set (the app gives the Redis one in scale-out)
        self.visitors: Visitors = LocalVisitors()
        # new counters per token or client IP (TALLY_CREATE_RATE_LIMIT; the app sets it)
        self.creations: Limiter | None = None
        # requests of shared pages per client (TALLY_SHARE_RATE_LIMIT; tally/site/shares.py)
        self.share_views: Limiter | None = None
        self.creator = Creations(store)
        # (counter id, split hour) -> (monotonic expiry, temporal sums before the split)
        self._settled_cache: dict[tuple[int, int, str], tuple[float, dict[str, Any]]] = {}
        writes.on_commit.append(self._forget_settled)
        # slug -> (monotonic expiry, workspace or None), its settings trusted for cache_ttl
        self._workspaces: dict[str, tuple[float, Workspace | None]] = {}

    async def workspace(self, slug: str) -> Workspace | None:
        """The workspace (its settings trusted for the cache TTL, as counters' are)."""
        now = time.monotonic()
        hit = self._workspaces.get(slug)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = await self.store.get_workspace(slug)
        if len(self._workspaces) >= 10_000:
            self._workspaces.clear()
        self._workspaces[slug] = (now + self.cache.ttl, found)
        return found

    def forget_workspace(self, slug: str) -> None:
        """Drop what this node remembers of the workspace and its counters (after a
        change of its settings here; other nodes see it within the cache TTL)."""
        self._workspaces.pop(slug, None)
        self.cache.forget_workspace(slug)

    async def _find(self, workspace: str, name: str) -> Counter | None:
        key = (workspace, name)
        now = time.monotonic()
        hit = self.cache.get(key, now)
        if hit is not None:
            return hit[1]
        epoch = self.cache.epoch()
        counter = await self.store.read_counter(workspace, name)
        self.cache.put(key, counter, now, epoch)
        return counter

    async def _visible(self, workspace: str, name: str, token: Token | None) -> Counter:
        counter = await self._find(workspace, name)
        if counter is None or (
            counter.private and (token is None or token.workspace_id != counter.workspace_id)
        ):
            raise NotFound()
        return counter

    async def may_create(self, who: object) -> None:
        """Spend one of `who`'s new counters (a token's id, a client IP): RateLimited if
        its budget is spent. Apart from the per-path rate limit, where every new name has
        a fresh budget of its own."""
        if self.creations is None:
            return
        decision = await self.creations.hit(("create", who), time.monotonic())
        if not decision.allowed:
            retry = max(1, math.ceil(decision.retry_after))
            raise RateLimited(
                f"too many new counters: {decision.limit} at most in a while, retry in {retry} s "
                "(counting existing counters goes on)",
                [(b"retry-after", b"%d" % retry)],
            )

    async def create(self, workspace: str, workspace_id: int, name: str) -> Counter:
        """The counter, created if missing (with others in one transaction, see
        Creations), and remembered as the name's counter."""
        epoch = self.cache.epoch()
        counter = await self.creator.ensure(workspace_id, name)
        self.cache.put((workspace, name), counter, time.monotonic(), epoch)
        return counter

    async def find(self, workspace: str, name: str) -> Counter | None:
        """The counter, its settings from the node's cache (tally.namespaces)."""
        return await self._find(workspace, name)

    async def _fresh(self, counter: Counter) -> CounterView:
        """The counter's totals now: a committed snapshot plus this node's pending changes."""
        epoch = self.writes.begin_read()
        try:
            counts = await self.store.read_counts(counter.id)
            if counts is None:  # deleted since it was cached
                self.cache.forget((counter.workspace_slug, counter.name))
                raise CounterGone()
            up, down, updated = self.writes.overlay(counter.id, *counts)
        finally:
            self.writes.end_read(epoch)
        return CounterView(counter, up, down, updated)

    @staticmethod
    def _require(counter: Counter, token: Token | None, need: Permission) -> None:
        """Check an action that a public counter does not allow to everyone."""
        needs = f"this action needs {'an' if need.label[0] in 'aeiou' else 'a'} {need.label} token"
        if token is None:
            raise Unauthorized(f"{needs} of the workspace")
        if token.workspace_id != counter.workspace_id or token.permission < need:
            raise Forbidden(f"{needs} of the workspace")

    async def readable(self, workspace: str, name: str, token: Token | None) -> Counter:
        """The counter if `token` may read it (its settings as cached), else the error."""
        counter = await self._visible(workspace, name, token)
        if counter.private:
            self._require(counter, token, Permission.READ)
        return counter

    async def get(self, workspace: str, name: str, token: Token | None) -> CounterView:
        return await self._fresh(await self.readable(workspace, name, token))

    async def stats(
        self, workspace: str, name: str, token: Token | None
    ) -> tuple[CounterView, dict[str, Any]]:
        """Stats from the recent buckets (read fresh, plus pending ones) and the cached
        `temporal` sums of the settled ones (see `tally.stats.settled_before`)."""
        view = await self.get(workspace, name, token)
        counter_id, now = view.counter.id, time.time()
        tz = self.zone(view.counter)
        split = settled_before(now, tz)
        epoch = self.writes.begin_read()
        try:
            recent = await self.store.read_history(counter_id, since_hour=split)
            buckets = recent.buckets + self.writes.overlay_hours(counter_id, recent.seq)
        finally:
            self.writes.end_read(epoch)
        summary = summarize(buckets, now, tz)
        return view, add_temporal(summary, await self._settled(counter_id, split, now, tz))

    def zone(self, counter: Counter) -> tzinfo:
        """The time zone of the counter's dates: its workspace's, else the server's."""
        return periods.zone(counter.workspace_timezone, self.tz)

    async def _settled(self, counter_id: int, split: int, now: float, tz: tzinfo) -> dict[str, Any]:
        """The `temporal` sums of the counter's buckets before `split`, remembered for
        SETTLED_TTL seconds, and forgotten at once when this node commits a late batch
        into those hours (a batch of another node shows within SETTLED_TTL)."""
        key = (counter_id, split, periods.zone_name(tz))
        hit = self._settled_cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        history = await self.store.read_history(counter_id, before_hour=split)
        temporal: dict[str, Any] = summarize(history.buckets, now, tz)["temporal"]
        if len(self._settled_cache) >= 10_000:
            self._settled_cache.clear()
        self._settled_cache[key] = (time.monotonic() + SETTLED_TTL, temporal)
        return temporal

    def _forget_settled(self, changes: BatchChanges) -> None:
        """A committed batch with buckets before the split (a late one: say a buffered
        batch that waited out a database outage) changes the cached sums."""
        if not self._settled_cache:
            return
        # a workspace's own zone moves its split by up to 26 hours from the server's
        split = settled_before(time.time(), self.tz) + 27
        late = {counter_id for counter_id, hour in changes.hours if hour < split}
        if late:
            for key in [k for k in self._settled_cache if k[0] in late]:
                del self._settled_cache[key]

    async def count(
        self,
        workspace: str,
        name: str,
        token: Token | None,
        up: int,
        down: int,
        source: origins.Source = origins.NO_SOURCE,
        visitor: Callable[[], Visitor] | None = None,
    ) -> CounterView:
        """Add `up` / `down` events to a counter (creating it if the token may).
        `source`: where the request says it comes from (tally.origins); `visitor`: who
        it is (asked only for an up of a counter with a unique window)."""
        try:
            return await self._count_named(workspace, name, token, up, down, source, visitor)
        except CounterGone:
            # deleted behind this node's back after the lookup (its name is forgotten
            # now): once more, as a request that came after the deletion (a Write token
            # creates it anew, anyone else gets the 404 of a missing counter)
            return await self._count_named(workspace, name, token, up, down, source, visitor)

    async def _count_named(
        self,
        workspace: str,
        name: str,
        token: Token | None,
        up: int,
        down: int,
        source: origins.Source,
        visitor: Callable[[], Visitor] | None,
    ) -> CounterView:
        counter = await self._find(workspace, name)
        if counter is None:
            if token is not None and token.workspace_slug == workspace:
                if token.permission < Permission.WRITE:
                    raise NotFound()
                await self.may_create(token.id)
                counter = await self.create(workspace, token.workspace_id, name)
            elif up == 1 and not down:
                counter = await self._create_page(workspace, name, source, visitor)
            else:
                raise NotFound()
        elif counter.private:
            if token is None or token.workspace_id != counter.workspace_id:
                raise NotFound()
            self._require(counter, token, Permission.WRITE)
        if up + down > 1:
            self._require(counter, token, Permission.WRITE)
        if counter.allowed_origins and (
            token is None or token.workspace_id != counter.workspace_id
        ):
            self.check_origin(counter, source)
        if counter.unique_window and up:
            return await self._count_unique(counter, token, up, down, visitor)
        return await self._count(counter, up, down)

    async def _create_page(
        self,
        workspace: str,
        name: str,
        source: origins.Source,
        visitor: Callable[[], Visitor] | None,
    ) -> Counter:
        """A missing counter that an anonymous up creates: its workspace counts pages
        (tally.pageviews) and the up comes from one of the workspace's allowed origins;
        one of the client's new counters (TALLY_CREATE_RATE_LIMIT), within the
        workspace's quota (QuotaReached). Else the 404 of a missing counter, or 403."""
        ws = await self.workspace(workspace)
        if ws is None or not ws.page_views:
            raise NotFound()
        origin = origins.request_origin(*source)
        if not ws.origins or not origins.allowed(origin, ws.origins):
            raise Forbidden(
                "this workspace counts new pages only from its allowed origins"
                if origin is None or not ws.origins
                else f"this workspace does not count new pages from {origin}"
            )
        await self.may_create(visitor()[0] if visitor is not None else "")
        counter = await self.create(workspace, ws.id, name)
        if counter.private:  # made private by its owner in the meantime
            raise NotFound()
        return counter

    async def _count_unique(
        self,
        counter: Counter,
        token: Token | None,
        up: int,
        down: int,
        visitor: Callable[[], Visitor] | None,
    ) -> CounterView:
        """An up of a counter with a unique window (see tally.visitors)."""
        owner = (
            token is not None
            and token.workspace_id == counter.workspace_id
            and token.permission >= Permission.WRITE
        )
        if owner or visitor is None:
            view = await self._count(counter, up, down)
            view.counted = True
            return view
        who = by_address(visitor()) if counter.unique_by_address else visitor()
        mark = await self.visitors.admit(counter.id, counter.unique_window, who)
        if mark is None:
            view = await self._fresh(counter)
            view.counted = False
            return view
        try:
            view = await self._count(counter, up, down)
        except (TallyError, StorageError):
            # refused at a bound, a write that did not commit, a buffered up whose read
            # failed (a 503: its change is never made): nothing was counted, so the
            # visit is not spent. A request cancelled while its change waits for the
            # commit keeps it (the change still commits).
            await self.visitors.forget(mark)
            raise
        view.counted = True
        return view

    async def _count(self, counter: Counter, up: int, down: int) -> CounterView:
        """Add the events to a counter whose access was checked."""
        if counter.bounded:
            ticket = self.writes.add(counter.id, up, down, time.time(), CHECK_BOUNDS)
            totals = await self.committed(ticket, counter)
            if totals.refused:
                raise bound_error(counter, up, down)
            return CounterView(counter, totals.up_count, totals.down_count, totals.updated_at)
        if self.commit:
            ticket = self.writes.add(counter.id, up, down, time.time())
            totals = await self._wait(counter, ticket)
            return CounterView(counter, totals.up_count, totals.down_count, totals.updated_at)
        return await self._buffered(
            counter, lambda: self.writes.add(counter.id, up, down, time.time())
        )

    async def current(self, counter: Counter) -> CounterView:
        """The counter's totals now, for the dashboard (which checked access itself)."""
        return await self._fresh(counter)

    async def change_settings(self, counter: Counter, change: CounterChange) -> Counter | None:
        """Save `change` to the counter's settings in one store call (one transaction),
        which checks new bounds against the committed value; None if the counter is gone.
        This node's pending changes are committed first, so that value is the one the
        node shows (in buffered mode they wait in memory); Unavailable if they are not
        within PENDING_WAIT seconds."""
        if change.bounds is not None:
            try:
                async with asyncio.timeout(PENDING_WAIT):
                    await self.writes.flush()
            except TimeoutError:
                # buffered mode retries a failed batch until the database takes it
                raise Unavailable(
                    "this node's pending counts are not committed yet (the database is "
                    "unavailable); nothing was changed, try again shortly"
                ) from None
        return await self.store.change_counter(counter.id, change)

    async def history(
        self, counter: Counter, since_hour: int = 0, before_hour: int = NO_END
    ) -> list[tuple[int, int, int]]:
        """The counter's hourly buckets from `since_hour` on (before `before_hour`),
        pending changes included."""
        epoch = self.writes.begin_read()
        try:
            recent = await self.store.read_history(counter.id, since_hour, before_hour)
            pending = self.writes.overlay_hours(counter.id, recent.seq)
            return recent.buckets + [b for b in pending if since_hour <= b[0] < before_hour]
        finally:
            self.writes.end_read(epoch)

    @staticmethod
    def check_origin(counter: Counter, source: origins.Source) -> None:
        """Forbidden unless `source` names an origin the counter allows (tally.origins)."""
        if not counter.allowed_origins:
            return
        origin = origins.request_origin(*source)
        if not origins.allowed(origin, counter.allowed_origins):
            raise Forbidden(
                "this counter accepts anonymous counts only from its allowed origins"
                if origin is None
                else f"this counter does not accept anonymous counts from {origin}"
            )

    async def committed(self, ticket: Ticket, counter: Counter) -> Totals:
        """The ticket's totals once committed, in either durability mode."""
        if not self.commit:
            self.writes.commit_soon()
        return await self._wait(counter, ticket)

    async def _wait(self, counter: Counter, ticket: Ticket) -> Totals:
        """`writes.wait`; a counter deleted before the commit is a 404 (nothing counted),
        and its name is forgotten, so the next request sees it gone at once."""
        try:
            return await self.writes.wait(ticket)
        except CounterGone:
            self.cache.forget((counter.workspace_slug, counter.name))
            raise

    async def set(
        self, workspace: str, name: str, token: Token | None, up: int, down: int
    ) -> CounterView:
        """Set a counter's totals (Admin; creates a missing counter). See GroupCommit.set."""
        for total in (up, down):
            if not 0 <= total <= MAX_SET:
                raise BadRequest(f"a total must be a whole number from 0 to {MAX_SET}")
        try:
            return await self._set_named(workspace, name, token, up, down)
        except CounterGone:  # deleted after the lookup: as a set after the deletion
            return await self._set_named(workspace, name, token, up, down)

    async def _set_named(
        self, workspace: str, name: str, token: Token | None, up: int, down: int
    ) -> CounterView:
        counter = await self._find(workspace, name)
        if counter is None:
            if (
                token is None
                or token.workspace_slug != workspace
                or token.permission < Permission.ADMIN
            ):
                raise NotFound()
            await self.may_create(token.id)
            counter = await self.create(workspace, token.workspace_id, name)
        elif counter.private and (token is None or token.workspace_id != counter.workspace_id):
            raise NotFound()
        self._require(counter, token, Permission.ADMIN)
        return await self.set_totals(counter, up, down)

    async def set_totals(self, counter: Counter, up: int, down: int) -> CounterView:
        """Set the totals of a counter the caller may set (see GroupCommit.set)."""
        check = CHECK_BOUNDS if counter.bounded else UNCHECKED
        totals = await self.committed(
            self.writes.set(counter.id, up, down, time.time(), check), counter
        )
        if totals.refused:
            raise Conflict(
                f"{up - down} is outside the counter's bounds "
                f"({_bound(counter.floor)} to {_bound(counter.ceiling)}): nothing was set"
            )
        return CounterView(counter, totals.up_count, totals.down_count, totals.updated_at)

    async def reset(self, workspace: str, name: str, token: Token | None) -> CounterView:
        for last in (False, True):
            counter = await self._visible(workspace, name, token)
            self._require(counter, token, Permission.WRITE)
            try:
                return await self.reset_counter(counter)
            except CounterGone:  # deleted after the lookup: look again (a 404 now)
                if last:
                    raise
        raise AssertionError("unreachable")

    async def reset_counter(self, counter: Counter) -> CounterView:
        """Reset both totals to zero (access already checked by the caller)."""
        if self.commit:
            ticket = self.writes.reset(counter.id, time.time())
            totals = await self._wait(counter, ticket)
            return CounterView(counter, totals.up_count, totals.down_count, totals.updated_at)
        return await self._buffered(counter, lambda: self.writes.reset(counter.id, time.time()))

    async def buffered(self, counter: Counter, change: Callable[[], object]) -> CounterView:
        """Buffered mode: `change`, answered as `_buffered` does (tally.namespaces)."""
        return await self._buffered(counter, change)

    async def _buffered(self, counter: Counter, change: Callable[[], object]) -> CounterView:
        """Buffered mode: read the committed totals first, then make the change and add
        this node's pending changes, with no await in between. A read that fails is a
        503 with nothing counted (the change is never made), and the answer is exactly
        the value after this request's own change."""
        epoch = self.writes.begin_read()
        try:
            counts = await self.store.read_counts(counter.id)
            if counts is None:  # deleted since it was cached
                self.cache.forget((counter.workspace_slug, counter.name))
                raise CounterGone()
            change()
            up, down, updated = self.writes.overlay(counter.id, *counts)
        finally:
            self.writes.end_read(epoch)
        return CounterView(counter, up, down, updated)


def _bound(value: int | None) -> str:
    return "none" if value is None else str(value)
