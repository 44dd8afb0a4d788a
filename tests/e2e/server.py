"""Run a real `tally serve` process (granian, a worker process) for end-to-end tests.

`TallyServer` starts the server on a free port of 127.0.0.1 (or of `host`, e.g. ::1),
waits for `/healthz`, and
stops it with SIGTERM (SIGKILL after a timeout), or kills it outright. Its output goes to
files in the test's tmp dir, and every failure message carries them. `TallyCli` runs the
admin commands (`tally workspace ...`, `tally token ...`, `tally counter ...`) against the
same database.

The server runs in its own process group (granian forks a worker), so a kill reaches the
worker too and nothing outlives a test.

`HttpConnection` and `burst` are a minimal keep-alive HTTP/1.1 client on asyncio streams
for load: httpx's pooled AsyncClient needs ~40 s for 10,000 requests over 64 connections
on a 2-core machine, these ~2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

TALLY = Path(sys.executable).parent / "tally"
HOST = "127.0.0.1"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0
TOKEN_RE = re.compile(r"tly_[A-Za-z0-9]{38}")
_START_ATTEMPTS = 3  # a free port can be taken between picking and binding it


# Every token the suite made with TallyCli, and every server it started: after each test,
# tests/e2e/conftest.py searches those servers' output for those tokens (none may be
# logged, whatever the test did).
MADE_TOKENS: set[str] = set()
STARTED: list[TallyServer] = []


class ServerError(RuntimeError):
    """The server did not start or stop as it should; the message holds its output."""


def free_port(host: str = HOST) -> int:
    """A TCP port of `host` (127.0.0.1, or ::1) that nothing listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any TALLY_* setting or proxy, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    for key in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(key, None)
    env.update(NO_PROXY="*", no_proxy="*")
    env.update(extra or {})
    return env


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class TallyServer:
    """One `tally serve` on one database; start, stop, kill and restart it any number of
    times. Each run gets a fresh port and its own `run-N.stdout` / `run-N.stderr`."""

    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str | None = None,
        durability: str = "commit",
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        host: str = HOST,
    ) -> None:
        self.workdir = workdir
        self.host = host
        self.database_url = database_url or sqlite_url(workdir / "t.db")
        self.durability = durability
        self.args = list(args)
        self.env = dict(env or {})
        self.port = 0
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncodes: list[int] = []

    # paths and output -----------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _log(self, stream: str, run: int | None = None) -> Path:
        return self.workdir / f"run-{self.runs if run is None else run}.{stream}"

    def stdout(self, run: int | None = None) -> str:
        """What the server printed on stdout in run `run` (default: the latest)."""
        return _read(self._log("stdout", run))

    def stderr(self, run: int | None = None) -> str:
        return _read(self._log("stderr", run))

    def output(self) -> str:
        """Both streams of the latest run, for failure messages."""
        return (
            f"--- tally serve run {self.runs} on port {self.port}, stdout:\n{self.stdout()}\n"
            f"--- stderr:\n{self.stderr()}"
        )

    # lifecycle ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        return [
            str(TALLY),
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--database",
            self.database_url,
            "--durability",
            self.durability,
            *self.args,
        ]

    def start(self, timeout: float = READY_TIMEOUT) -> TallyServer:
        """Start the server and wait until /healthz answers 200 (at most `timeout` s)."""
        if self.proc is not None:
            raise ServerError("the server is already started")
        if self not in STARTED:
            STARTED.append(self)
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.runs += 1
            self.port = free_port(self.host)
            with (
                self._log("stdout").open("wb") as out,
                self._log("stderr").open("wb") as err,
            ):
                self.proc = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=clean_env(self.env),
                    cwd=self.workdir,
                    start_new_session=True,
                )
            try:
                self._wait_ready(timeout)
                return self
            except ServerError:
                port_taken = "already in use" in self.stderr().lower()
                self._reap(signal.SIGKILL, 5.0)
                if not port_taken or attempt == _START_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        url = f"{self.base_url}/healthz"
        with httpx.Client(trust_env=False, timeout=1.0) as client:
            while time.monotonic() < deadline:
                code = self.proc.poll()
                if code is not None:
                    raise ServerError(
                        f"tally serve exited with {code} before ready\n{self.output()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(url).status_code == 200:
                        return
                time.sleep(0.05)
        raise ServerError(f"tally serve not ready within {timeout} s\n{self.output()}")

    def stop(
        self,
        sig: signal.Signals = signal.SIGTERM,
        timeout: float = STOP_TIMEOUT,
        group: bool = False,
    ) -> int:
        """Send `sig` (to the main process, or to the whole group like Ctrl-C does) and wait
        for the exit; SIGKILL after `timeout`. Raises ServerError when it had to kill."""
        if self.proc is None:
            return self.returncodes[-1] if self.returncodes else 0
        graceful = self._reap(sig, timeout, group=group)
        code = self.returncodes[-1]
        if not graceful:
            raise ServerError(
                f"tally serve ignored {sig.name} for {timeout} s and was killed\n{self.output()}"
            )
        return code

    def kill(self) -> int:
        """SIGKILL the server and its worker at once (a crash): nothing gets to clean up."""
        if self.proc is None:
            raise ServerError("the server is not started")
        self._reap(signal.SIGKILL, 5.0, group=True)
        return self.returncodes[-1]

    def restart(self, timeout: float = READY_TIMEOUT) -> TallyServer:
        """Stop gracefully (if running) and start again on the same database."""
        if self.proc is not None:
            self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Teardown: stop whatever still runs, never raising for a stubborn server."""
        if self.proc is not None:
            self._reap(signal.SIGTERM, STOP_TIMEOUT)

    def _reap(self, sig: signal.Signals, timeout: float, group: bool = False) -> bool:
        """Signal, wait up to `timeout`, SIGKILL the group if needed; True if it exited in
        time. Always leaves no process of the group behind and `self.proc` None."""
        proc = self.proc
        assert proc is not None
        graceful = True
        try:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    if group:
                        os.killpg(proc.pid, sig)
                    else:
                        proc.send_signal(sig)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    graceful = sig == signal.SIGKILL
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5.0)
            # the worker must not outlive the main process
            _kill_group_leftovers(proc.pid)
        finally:
            self.proc = None
            self.returncodes.append(proc.returncode if proc.returncode is not None else -9)
        return graceful


def _kill_group_leftovers(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


class TallyCli:
    """The admin commands on one database: `cli.run("workspace", "create", "acme")`."""

    def __init__(self, database_url: str, env: Mapping[str, str] | None = None) -> None:
        self.database_url = database_url
        self.env = dict(env or {})

    def run(
        self, *args: str, check: bool = True, timeout: float = CLI_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run `tally ARGS --database URL`; with `check`, fail unless it exits 0."""
        cmd = [str(TALLY), *args, "--database", self.database_url]
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=clean_env(self.env),
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def workspace(self, slug: str) -> None:
        self.run("workspace", "create", slug)

    def token(self, workspace: str, permission: str) -> str:
        """Create a token; it is the last line of stdout."""
        out = self.run("token", "create", "--workspace", workspace, "--permission", permission)
        last = out.stdout.rstrip("\n").splitlines()[-1]
        if not TOKEN_RE.fullmatch(last):
            raise AssertionError(f"the last line of token create is not a token: {out.stdout!r}")
        MADE_TOKENS.add(last)
        return last

    def counter(self, path: str, *, private: bool = False) -> None:
        self.run("counter", "create", path, *(["--private"] if private else []))


# a minimal HTTP/1.1 keep-alive client ---------------------------------------------------


class ProtocolError(Exception):
    """The server's answer is not an HTTP/1.1 response this client understands."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpConnection:
    """One keep-alive connection to 127.0.0.1:port; GET requests one after another."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False

    @classmethod
    async def open(cls, port: int, connect_within: float = 5.0, host: str = HOST) -> HttpConnection:
        async with asyncio.timeout(connect_within):
            reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def get(
        self,
        path: str,
        token: str | None = None,
        within: float = REQUEST_TIMEOUT,
        extra: Mapping[str, str] | None = None,
    ) -> Response:
        """GET `path`; TimeoutError (an OSError) if the answer takes over `within` s."""
        async with asyncio.timeout(within):
            return await self._get(path, token, extra or {})

    async def _get(self, path: str, token: str | None, extra: Mapping[str, str]) -> Response:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        auth += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{auth}\r\n".encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError(f"bad status line {status_line!r}")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise ProtocolError(f"no content-length in {head!r}")
        body = await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(int(parts[1]), headers, body)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()


# what a dead, dying or hung server does to a connection (TimeoutError is an OSError)
CONNECTION_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError)


@dataclass
class BurstResult:
    """What a burst of GETs saw. `attempted` counts requests written to a connection (the
    server may have processed them); `refused` counts connects that failed (nothing sent)."""

    attempted: int = 0
    refused: int = 0
    failed: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    up_counts: list[int] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return self.statuses[200]


async def get_data(port: int, path: str, token: str | None = None) -> dict[str, Any]:
    """The `data` object of one GET that must answer 200."""
    conn = await HttpConnection.open(port)
    try:
        response = await conn.get(path, token)
    finally:
        conn.close()
    assert response.status == 200, response.body
    data = response.json()["data"]
    assert isinstance(data, dict)
    return data


async def burst(
    port: int,
    path: str,
    *,
    total: int,
    connections: int,
    token: str | None = None,
    time_limit: float = 60.0,
    stop_on_error: bool = False,
    result: BurstResult | None = None,
) -> BurstResult:
    """`total` GETs of `path` over `connections` keep-alive connections, each connection
    taking the next request from one shared, bounded sequence. Collects the status of each
    answer and `data.up_count` of each 200. A connection error ends the worker when
    `stop_on_error` (the server is gone), else it reconnects. Raises TimeoutError after
    `time_limit` seconds."""
    res = result if result is not None else BurstResult()
    todo: Iterator[int] = iter(range(total))

    async def worker() -> None:
        conn: HttpConnection | None = None
        try:
            for _ in todo:
                if conn is None or conn.closed:
                    try:
                        conn = await HttpConnection.open(port)
                    except (OSError, TimeoutError):
                        res.refused += 1
                        if stop_on_error:
                            return
                        continue
                res.attempted += 1
                try:
                    response = await conn.get(path, token)
                except CONNECTION_ERRORS:
                    res.failed += 1
                    conn.close()
                    if stop_on_error:
                        return
                    continue
                res.statuses[response.status] += 1
                if response.status == 200:
                    res.up_counts.append(int(response.json()["data"]["up_count"]))
        finally:
            if conn is not None:
                conn.close()

    async with asyncio.timeout(time_limit), asyncio.TaskGroup() as workers:
        for _ in range(connections):
            workers.create_task(worker())
    return res


async def wait_until(predicate: Callable[[], bool], within: float, interval: float = 0.01) -> bool:
    """Poll `predicate` every `interval` s for at most `within` s; its last value."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True
