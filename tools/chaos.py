"""Chaos: load on real `tally serve` processes, killed at random moments; what survived.

    python -m tools.chaos --backend sqlite --mode commit --signal kill --cycles 20
    python -m tools.chaos --backend postgresql --mode buffered --signal term --cycles 20

Each cycle starts the nodes that are down, drives load for `--duration` seconds, and at a
random moment in it sends one node SIGKILL (a crash) or SIGTERM (a graceful stop); the
load goes on against whatever still answers, then the node is started again and every
counter is read back. Every request is recorded: written or not, its status, the value
its answer carried, and when. The backends: `sqlite` is one node on a file;
`postgresql` is two nodes on one PostgreSQL (a schema of the run's own, dropped at the
end) and one Redis, each worker pinned to one node, and each cycle kills one of them.

Two kinds of counters:

- shared ones (`s0`..): every worker sends `up`, `up?by=N`, `down`, `down?by=N` at once.
  Per cycle, with U the events stored (read back minus the value before the cycle),
  A the events acknowledged (200) and F the events of requests *unanswered*
  (written to the socket, no complete answer: in flight at the kill),
  lost = max(0, A - U) and double = max(0, U - A - F): a change is counted twice when
  more is stored than was acknowledged plus everything that might have landed.
- owned ones (`o0`..): one worker each, requests one after another (up, down, by N,
  set), so an exact model knows the value after every request: each answer must carry
  the model's value, and the stored value must be the model after every acknowledged
  request (plus possibly the one unanswered request; a worker stops at its first).

The checks: commit mode, and SIGTERM in both modes: lost = 0, double = 0, wrong
answers = 0. SIGTERM also: every request written before the signal is answered.
Buffered mode with SIGKILL: double = 0; lost only among changes the killed node
acknowledged within the window before the kill (`--window`, default the flush interval
plus 0.5 s for the commit that was running), and for an owned counter the stored value
is the model after some prefix of its requests that keeps every set (sets are answered
after their commit). Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tools.node import TALLY, Connection, Node, Unanswered, clean_env

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
# a busy machine may start a flush a little after its interval: read after both
FLUSH_MARGIN = 1.0


@dataclass
class Ack:
    """One acknowledged change of a shared counter."""

    node: int
    at: float
    up: int
    down: int


@dataclass
class Shared:
    base: tuple[int, int] = (0, 0)
    acks: list[Ack] = field(default_factory=list)
    unanswered: list[int] = field(default_factory=lambda: [0, 0])
    answered_up: int = 0  # the highest up_count an answer carried


@dataclass
class Step:
    """One request of an owned counter, and the model's value after it."""

    kind: str
    n: int
    m: int  # set: down_count
    after: tuple[int, int]
    status: int | None = None  # None: unanswered
    at: float = 0.0


@dataclass
class Owned:
    value: tuple[int, int] = (0, 0)  # stored, as read back after the last cycle
    steps: list[Step] = field(default_factory=list)


@dataclass
class Figures:
    sent: int = 0  # requests written to a connection
    acknowledged: int = 0  # answered 200
    unavailable: int = 0  # answered 503 (nothing counted)
    other: int = 0  # any other status (an error)
    unanswered: int = 0  # written, no complete answer
    unanswered_before_signal: int = 0  # written before a SIGTERM, never answered
    refused: int = 0  # connects that failed: nothing sent
    events_acknowledged: int = 0
    events_stored: int = 0
    lost: int = 0  # acknowledged events (shared) / requests (owned) not stored
    lost_allowed: int = 0  # of those, in the buffered window before a SIGKILL
    double: int = 0
    wrong_answers: int = 0

    def add(self, other: Figures) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Chaos:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.workdir = workdir
        self.shared = {f"s{i}": Shared() for i in range(args.shared)}
        self.owned = {f"o{i}": Owned() for i in range(args.workers)}
        self.token = ""
        self.nodes: list[Node] = []
        self.figures = Figures()
        self.signalled_at = 0.0
        self.victim = -1
        self.schema = ""

    # setup ----------------------------------------------------------------------

    def database(self) -> str:
        if self.args.backend == "sqlite":
            return f"sqlite:///{self.workdir / 'chaos.db'}"
        self.schema = f"tally_chaos_{secrets.token_hex(6)}"
        sep = "&" if "?" in self.args.database else "?"
        return f"{self.args.database}{sep}schema={self.schema}"

    def cli(self, database: str, *args: str) -> str:
        done = subprocess.run(
            [TALLY, *args, "--database", database], capture_output=True, text=True,
            env=clean_env({}), check=True, timeout=60,
        )  # fmt: skip
        return done.stdout

    def setup(self) -> None:
        database = self.database()
        self.cli(database, "workspace", "create", "ws")
        out = self.cli(database, "token", "create", "--workspace", "ws", "--permission", "admin")
        self.token = out.strip().splitlines()[-1]
        env = {
            "TALLY_RATE_LIMIT": "off",
            "TALLY_CREATE_RATE_LIMIT": "off",  # (the harness makes its counters at once)
            "TALLY_COUNTER_QUOTA": "off",
            "TALLY_FLUSH_INTERVAL": str(self.args.flush_interval),
        }
        count = 1
        if self.args.backend == "postgresql":
            env |= {"TALLY_REDIS_URL": self.args.redis, "TALLY_REDIS_PREFIX": f"{self.schema}:"}
            count = 2
        self.nodes = [Node(i, database, self.args.mode, env, self.workdir) for i in range(count)]
        for node in self.nodes:
            node.start()

    def teardown(self) -> None:
        for node in self.nodes:
            if node.running:
                node.signal(signal.SIGTERM)
        if self.schema:
            with contextlib.suppress(Exception):
                import psycopg

                with psycopg.connect(self.args.database, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    # load -------------------------------------------------------------------------

    async def request(
        self, conn: Connection | None, node: Node, path: str, fig: Figures
    ) -> tuple[Connection | None, int | None, dict[str, Any], float]:
        """(connection, status or None if unanswered, body, written at); a connect that
        fails sends nothing and returns status 0."""
        if conn is None:
            try:
                conn = await Connection.open(node.port)
            except (OSError, TimeoutError):
                fig.refused += 1
                await asyncio.sleep(0.05)
                return None, 0, {}, 0.0
        fig.sent += 1
        try:
            status, body, written = await conn.get(path, self.token)
        except Unanswered:
            conn.close()
            fig.unanswered += 1
            return None, None, {}, 0.0
        if status == 200:
            fig.acknowledged += 1
        elif status == 503:
            fig.unavailable += 1
        else:
            fig.other += 1
        return conn, status, body, written

    async def shared_worker(self, w: int, stop: asyncio.Event, fig: Figures) -> None:
        node = self.nodes[w % len(self.nodes)]
        conn: Connection | None = None
        while not stop.is_set():
            name = self.rng.choice(list(self.shared))
            kind = self.rng.choice(["up", "up", "down"])
            n = self.rng.choice([1, 1, self.rng.randint(2, 50)])
            path = f"/v2/ws/{name}/{kind}" + (f"?by={n}" if n > 1 else "")
            sent_at = time.monotonic()
            conn, status, body, _ = await self.request(conn, node, path, fig)
            counter = self.shared[name]
            up, down = (n, 0) if kind == "up" else (0, n)
            if status is None:
                counter.unanswered[0] += up
                counter.unanswered[1] += down
                if self.args.signal == "term" and self.signalled_at and sent_at < self.signalled_at:
                    fig.unanswered_before_signal += 1
            elif status == 200:
                counter.acks.append(Ack(node.index, time.monotonic(), up, down))
                counter.answered_up = max(counter.answered_up, int(body["data"]["up_count"]))
        if conn is not None:
            conn.close()

    async def owned_worker(self, w: int, stop: asyncio.Event, fig: Figures) -> None:
        node = self.nodes[w % len(self.nodes)]
        name = f"o{w}"
        counter = self.owned[name]
        conn: Connection | None = None
        while not stop.is_set():
            up, down = counter.steps[-1].after if counter.steps else counter.value
            kind = self.rng.choice(["up", "up", "down", "set"])
            if kind == "set":
                n, m = self.rng.randint(0, 10**6), self.rng.randint(0, 1000)
                path, after = f"/v2/ws/{name}/set?up_count={n}&down_count={m}", (n, m)
            else:
                n, m = self.rng.choice([1, self.rng.randint(2, 50)]), 0
                path = f"/v2/ws/{name}/{kind}" + (f"?by={n}" if n > 1 else "")
                after = (up + n, down) if kind == "up" else (up, down + n)
            sent_at = time.monotonic()
            conn, status, body, _ = await self.request(conn, node, path, fig)
            if status == 0:
                continue  # nothing sent
            step = Step(kind, n, m, after, status, time.monotonic())
            if status is None:
                counter.steps.append(step)
                if self.args.signal == "term" and self.signalled_at and sent_at < self.signalled_at:
                    fig.unanswered_before_signal += 1
                break  # the model does not know whether it landed: stop here
            if status == 200:
                counter.steps.append(step)
                data = body["data"]
                if (int(data["up_count"]), int(data["down_count"])) != after:
                    fig.wrong_answers += 1
        if conn is not None:
            conn.close()

    # a cycle ------------------------------------------------------------------------

    async def cycle(self, number: int) -> Figures:
        fig = Figures()
        for node in self.nodes:
            if not node.running:
                await asyncio.to_thread(node.start)
        self.signalled_at = 0.0
        stop = asyncio.Event()
        workers = [
            *(self.shared_worker(w, stop, fig) for w in range(self.args.workers)),
            *(self.owned_worker(w, stop, fig) for w in range(self.args.workers)),
        ]
        tasks = [asyncio.create_task(w) for w in workers]
        duration = self.args.duration
        await asyncio.sleep(self.rng.uniform(0.2, 0.8) * duration)
        self.victim = self.rng.randrange(len(self.nodes))
        sig = signal.SIGKILL if self.args.signal == "kill" else signal.SIGTERM
        self.signalled_at = time.monotonic()
        code = await asyncio.to_thread(self.nodes[self.victim].signal, sig)
        if sig == signal.SIGTERM and code != 0:
            fig.other += 1  # a graceful stop must exit 0
        left = duration - (time.monotonic() - self.signalled_at)
        await asyncio.sleep(max(0.3, left / 2))
        stop.set()
        await asyncio.gather(*tasks)
        await asyncio.to_thread(self.nodes[self.victim].start)
        if self.args.mode == "buffered" and len(self.nodes) > 1:
            # the nodes that were not stopped hold up to a flush interval of acknowledged
            # changes, which only they can see until they commit them (docs/durability.md):
            # read once every one of them had its flush
            await asyncio.sleep(self.args.flush_interval + FLUSH_MARGIN)
        await self.verify(fig)
        return fig

    async def read(self, name: str) -> tuple[int, int]:
        node = self.nodes[0]
        for _ in range(50):
            conn = await Connection.open(node.port)
            try:
                status, body, _ = await conn.get(f"/v2/ws/{name}", self.token)
            finally:
                conn.close()
            if status == 200:
                return int(body["data"]["up_count"]), int(body["data"]["down_count"])
            if status == 404:
                return 0, 0
            await asyncio.sleep(0.1)
        raise RuntimeError(f"cannot read {name}: {status} {body}")

    def window_start(self) -> float:
        return self.signalled_at - float(self.args.window)

    async def verify(self, fig: Figures) -> None:
        lossy = self.args.mode == "buffered" and self.args.signal == "kill"
        for name, counter in self.shared.items():
            up, down = await self.read(name)
            for i, stored in enumerate((up - counter.base[0], down - counter.base[1])):
                acked = sum(a.up if i == 0 else a.down for a in counter.acks)
                maybe = counter.unanswered[i]
                fig.events_acknowledged += acked
                fig.events_stored += stored
                lost = max(0, acked - stored)
                fig.lost += lost
                fig.double += max(0, stored - acked - maybe)
                if lost and lossy:
                    window = sum(
                        (a.up if i == 0 else a.down) for a in counter.acks
                        if a.node == self.victim and a.at >= self.window_start()
                    )  # fmt: skip
                    fig.lost_allowed += min(lost, window)
            if not lossy and counter.answered_up > up:
                fig.lost += 1  # a value answered to a client is not durable
            self.shared[name] = Shared(base=(up, down))
        for w, (name, owned) in enumerate(self.owned.items()):
            value = await self.read(name)
            self.check_owned(owned, value, w % len(self.nodes), lossy, fig)
            self.owned[name] = Owned(value=value)

    def check_owned(
        self, counter: Owned, stored: tuple[int, int], node: int, lossy: bool, fig: Figures
    ) -> None:
        steps = counter.steps
        acked = [i for i, s in enumerate(steps) if s.status == 200]
        fig.events_acknowledged += len(acked)
        values = [counter.value] + [s.after for s in steps]
        last = acked[-1] + 1 if acked else 0  # prefix length holding every ack
        if not lossy:
            ok = stored == values[last] or (
                steps and steps[-1].status is None and stored == values[len(steps)]
            )
            fig.events_stored += len(acked) if ok else 0
            fig.lost += 0 if ok else max(1, len(acked))
            return
        # buffered SIGKILL: the stored value is the model after some prefix k that
        # keeps every set; acked requests after k must be in the window
        last_set = max((i + 1 for i in acked if steps[i].kind == "set"), default=0)
        for k in range(len(values) - 1, last_set - 1, -1):
            if values[k] != stored:
                continue
            dropped = [i for i in acked if i >= k]
            fig.events_stored += len(acked) - len(dropped)
            fig.lost += len(dropped)
            if node == self.victim:
                fig.lost_allowed += sum(steps[i].at >= self.window_start() for i in dropped)
            return
        fig.lost += max(1, len(acked))  # no prefix matches: a wrong value

    # the run ------------------------------------------------------------------------------

    def failures(self) -> list[str]:
        f = self.figures
        out = []
        if f.double:
            out.append(f"{f.double} events counted twice")
        if f.wrong_answers:
            out.append(f"{f.wrong_answers} answers carried a wrong value")
        if f.other:
            out.append(f"{f.other} answers neither 200 nor 503 (or an unclean exit)")
        if f.lost > f.lost_allowed:
            out.append(f"{f.lost - f.lost_allowed} acknowledged changes lost")
        if f.unanswered_before_signal:
            out.append(f"{f.unanswered_before_signal} requests in flight at SIGTERM unanswered")
        if f.acknowledged == 0:
            out.append("nothing was acknowledged")
        return out

    async def run(self) -> None:
        for number in range(1, self.args.cycles + 1):
            fig = await self.cycle(number)
            self.figures.add(fig)
            if not self.args.quiet:
                print(f"cycle {number:2}: {_line(fig)}", flush=True)


def _line(f: Figures) -> str:
    return (
        f"sent {f.sent}, acknowledged {f.acknowledged}, 503 {f.unavailable}, "
        f"unanswered {f.unanswered} (before a SIGTERM {f.unanswered_before_signal}), "
        f"other {f.other}; changes acknowledged "
        f"{f.events_acknowledged}, stored {f.events_stored}, lost {f.lost} "
        f"(in window {f.lost_allowed}), double {f.double}, wrong answers {f.wrong_answers}"
    )


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--mode", choices=["commit", "buffered"], default="commit")
    parser.add_argument("--signal", choices=["kill", "term"], default="kill")
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of load a cycle")
    parser.add_argument("--workers", type=int, default=8, help="shared and owned, each")
    parser.add_argument("--shared", type=int, default=4, help="shared counters")
    parser.add_argument("--flush-interval", type=float, default=1.0)
    parser.add_argument("--window", type=float, help="buffered loss window (s)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--database", default=POSTGRES, help="PostgreSQL (its own schema)")
    parser.add_argument("--redis", default=REDIS)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.window is None:
        args.window = args.flush_interval + 0.5
    if args.seed is None:
        args.seed = secrets.randbelow(2**31)
    return args


async def chaos(args: argparse.Namespace, workdir: Path) -> tuple[Figures, list[str]]:
    """Run it; the total figures and the failed checks (empty: all passed)."""
    run = Chaos(args, workdir)
    try:
        await asyncio.to_thread(run.setup)
        await run.run()
    finally:
        await asyncio.to_thread(run.teardown)
    return run.figures, run.failures()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="tally-chaos-") as tmp:
        figures, failures = asyncio.run(chaos(args, Path(tmp)))
    what = f"{args.backend} {args.mode} SIG{args.signal.upper()} x{args.cycles} (seed {args.seed})"
    print(f"{what}: {_line(figures)}")
    if args.json:
        args.json.write_text(json.dumps({"run": what, **asdict(figures)}, indent=2) + "\n")
    for failure in failures:
        print(f"FAILED: {failure}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
