"""up-with-viewer: the API's latency while someone browses a huge workspace's list.

`up` over 10,000 counters in turn (as up-10k), measured twice on one server, in one
run: alone, then while a scripted viewer, signed in on the dashboard, pages through a
workspace of 1,000,000 counters (`--viewer-counters`) in every sort: each sort's first
page, the page 90 % of the way down (by its cursor), and the Next links after each,
one request after another for as long as the load runs. The goal (issue 21): the API's
p99 with the viewer within 1.5 x its p99 alone. Before issue 21 one viewer on a deep
page took the API's p50 from 2.4 ms to 938 ms (SQLite read on the event loop, OFFSET
and a full sort per page).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import statistics
import threading
import time
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from urllib.parse import urlencode

import httpx

from bench import fixtures
from bench.progress import progress
from bench.scenarios import (
    DRAIN,
    NO_LIMIT,
    RANDOM_PATH,
    SPREAD,
    Measurement,
    Run,
    measure,
)
from bench.servers import tally_server
from bench.wrk import Load
from tally.links import secret_hash
from tally.models import Role
from tally.storage import paging
from tally.storage.sqlite import SQLiteStore

NAME = "up-with-viewer"
ALONE = f"{NAME}-alone"
COUNTERS = 1_000_000
MAX_P99_RATIO = 1.5  # the p99 with the viewer against the p99 alone (issue 21)
BIG = "big"  # the viewed workspace
SORTS = [("name", "asc"), ("updated", "desc"), ("up", "desc"), ("down", "desc"), ("up", "asc")]
NEXT_PAGES = 3  # Next links followed after each first and deep page
_NEXT = re.compile(r'href="\?([^"]*)" rel="next"')
# counter i of the big workspace: c-{i:07d}, up (i * 7919) % 1000, down i % 13, updated
# within the last day; one statement
_FILL = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
INSERT INTO counters (workspace_id, name, up_count, down_count, created_at, updated_at)
SELECT ?, printf('c-%07d', i), (i * 7919) % 1000, i % 13, ?, ? - (i * 37) % 86400 FROM n
"""


@dataclass
class ViewerPages:
    """What the viewer did over the loaded run."""

    pages: int = 0
    errors: int = 0
    times_ms: list[float] = field(default_factory=list)

    def line(self) -> str:
        if not self.times_ms:
            return "the viewer loaded no page"
        t = sorted(self.times_ms)
        p99 = t[min(len(t) - 1, int(len(t) * 0.99))]
        return (
            f"the viewer loaded {self.pages} list pages ({self.errors} not 200): median "
            f"{statistics.median(t):.1f} ms, p99 {p99:.1f} ms, max {t[-1]:.1f} ms"
        )


@dataclass(frozen=True)
class ViewerDatabase:
    path: Path
    token: str  # a Write token of the loaded workspace
    session: str  # the viewer's dashboard session
    paths: list[str]  # each sort's first and deep page


def prepare(work: Path, counters: int) -> ViewerDatabase:
    """The loaded workspace (10,000 counters and a Write token, as up-10k) and the big
    one (`counters`, one statement), an owner of it signed in."""
    db = work / "viewer.db"
    progress(f"{NAME}: preparing 10,000 counters and a workspace of {counters:,}")
    workspace_id = fixtures.create_workspace(db)
    token = fixtures.create_token(db, "write")
    fixtures.bulk_insert(db, workspace_id, [DRAIN, *fixtures.numbered("c", SPREAD)])
    session, big_id = asyncio.run(_owner(db))
    started = time.perf_counter()
    now = time.time()
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute("PRAGMA cache_size = -262144")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_FILL, (counters, big_id, now, now))
        conn.execute("COMMIT")
        paths = [_first(sort, d) for sort, d in SORTS]
        paths += [_deep(conn, big_id, sort, d, counters) for sort, d in SORTS]
    conn.close()
    progress(f"{NAME}: {counters:,} counters inserted in {time.perf_counter() - started:.1f} s")
    return ViewerDatabase(db, token, session, paths)


async def _owner(db: Path) -> tuple[str, int]:
    store = SQLiteStore(db)
    await store.open()
    try:
        ws = await store.create_workspace(BIG, "Big")
        now = time.time()
        account = await store.create_account("viewer@example.com", "x", now)
        await store.add_member(ws.id, account.id, Role.OWNER, now)
        session = "bench-viewer-session-0123456789abcdef"
        await store.create_session(secret_hash(session), account.id, now, now + 86400)
        return session, ws.id
    finally:
        await store.close()


def _first(sort: str, direction: str) -> str:
    return f"/w/{BIG}?" + urlencode({"sort": sort, "dir": direction})


def _deep(conn: sqlite3.Connection, workspace_id: int, sort: str, direction: str, n: int) -> str:
    """The page after the counter 90 % of the way down, as a Next link names it."""
    columns = ", ".join(c.removeprefix("c.") for c in paging.SORTS[sort])
    order = paging.order(sort, "", direction == "desc").replace("c.", "")
    row = conn.execute(
        f"SELECT {columns} FROM counters WHERE workspace_id = ? ORDER BY {order} LIMIT 1 OFFSET ?",
        (workspace_id, n * 9 // 10),
    ).fetchone()
    cursor = paging.encode(tuple(row))
    return f"/w/{BIG}?" + urlencode({"sort": sort, "dir": direction, "after": cursor})


class Viewer(threading.Thread):
    """One person paging through the big workspace's list, a request at a time."""

    def __init__(self, url: str, db: ViewerDatabase) -> None:
        super().__init__(name="bench-viewer", daemon=True)
        self.url = url
        self.db = db
        self.stopping = threading.Event()
        self.seen = ViewerPages()

    def run(self) -> None:
        cookies = {"tally_session": self.db.session}
        with httpx.Client(base_url=self.url, cookies=cookies, timeout=30.0) as client:
            while not self.stopping.is_set():
                for path in self.db.paths:
                    for _ in range(1 + NEXT_PAGES):
                        if self.stopping.is_set():
                            return
                        page = self._get(client, path)
                        found = _NEXT.search(page)
                        if found is None:
                            break
                        path = f"/w/{BIG}?" + unescape(found[1])

    def _get(self, client: httpx.Client, path: str) -> str:
        started = time.perf_counter()
        r = client.get(path)
        self.seen.times_ms.append((time.perf_counter() - started) * 1000)
        self.seen.pages += 1
        if r.status_code != 200:
            self.seen.errors += 1
        return r.text


def run_viewer(run: Run, work: Path, counters: int = COUNTERS) -> list[Measurement]:
    """Both loads on one server: alone, then with the viewer; the second judged
    against the first."""
    db = prepare(work, counters)
    load = Load(script="roundrobin", path=RANDOM_PATH, count=SPREAD, token=db.token)
    title = f"up, Write token, commit, {SPREAD:,} counters in turn"
    env = {"TALLY_COUNTER_QUOTA": "off", "TALLY_CREATE_RATE_LIMIT": "off"}
    server = tally_server(
        db.path, durability="commit", rate_limit=NO_LIMIT, log_dir=run.logs, name=NAME, env=env
    )
    with server:
        pid = [server.worker_pid()]
        alone = measure(run, server.url, pid, ALONE, f"{title}, alone", load, 200, warmup=True)
        viewer = Viewer(server.url, db)
        viewer.start()
        try:
            time.sleep(0.5)  # the viewer's first pages: its thread and connection warm
            title = f"{title}, a viewer paging through {counters:,} counters"
            loaded = measure(run, server.url, pid, NAME, title, load, 200, warmup=False)
        finally:
            viewer.stopping.set()
            viewer.join(timeout=60)
    ratio = loaded.p99_ms / alone.p99_ms if alone.p99_ms else float("inf")
    loaded.target = f"p99 <= {MAX_P99_RATIO:g} x {ALONE}'s"
    loaded.met = ratio <= MAX_P99_RATIO and viewer.seen.pages > 0 and not viewer.seen.errors
    loaded.notes.append(
        f"p99 {loaded.p99_ms:.2f} ms against {alone.p99_ms:.2f} ms alone: {ratio:.2f} x "
        f"(at most {MAX_P99_RATIO:g} x: {'yes' if ratio <= MAX_P99_RATIO else 'NO'}); "
        f"{viewer.seen.line()}"
    )
    progress(f"{NAME}: {loaded.notes[-1]}")
    db.path.unlink()
    return [alone, loaded]
