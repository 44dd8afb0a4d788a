"""Real `tally serve` processes and a minimal keep-alive HTTP client, for the harnesses:
a `Node` on a fixed port in its own process group (SIGKILL reaches granian's worker
too; tools/chaos.py, tools/soak.py), and a `Connection` that tells a request never
answered (`Unanswered`) from one never sent (tools/chaos.py; the soak's load is wrk's)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

TALLY = str(Path(sys.executable).parent / "tally")
HOST = "127.0.0.1"
REQUEST_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        env.pop(key, None)
    return {**env, "NO_PROXY": "*", **extra}


class Node:
    """One `tally serve` on a fixed port, in its own process group."""

    def __init__(self, index: int, database: str, mode: str, env: dict[str, str], logs: Path):
        self.index = index
        self.port = free_port()
        self.database = database
        self.mode = mode
        self.env = env
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 30.0) -> None:
        self.starts += 1
        log = self.logs / f"node{self.index}-run{self.starts}.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [TALLY, "serve", "--host", HOST, "--port", str(self.port), "--database",
                 self.database, "--durability", self.mode, "--no-bootstrap"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=clean_env(self.env), start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                # the log's tail in the error: the log itself may be in a temporary
                # directory removed before anyone reads it
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise RuntimeError(f"node {self.index} exited at start ({log}):\n{tail}")
            url = f"http://{HOST}:{self.port}/healthz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"node {self.index} not ready in {timeout} s: see {log}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals, wait: float = 40.0) -> int:
        """SIGKILL the whole group, or SIGTERM the main process; wait for the exit."""
        proc = self.proc
        assert proc is not None
        with contextlib.suppress(ProcessLookupError):
            if sig == signal.SIGKILL:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        try:
            code = proc.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # granian's worker must not outlive it
        self.proc = None
        return code


class Unanswered(Exception):
    """The request was written; no complete answer came."""


class Connection:
    """A keep-alive HTTP/1.1 connection for GETs."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        async with asyncio.timeout(2.0):
            return cls(*await asyncio.open_connection(HOST, port))

    async def get(self, path: str, token: str) -> tuple[int, dict[str, Any], float]:
        """(status, body, time the request was written); Unanswered once written."""
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        try:
            await self.writer.drain()
        except OSError as exc:
            raise Unanswered() from exc
        written = time.monotonic()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await self.reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ")[1])
                length = next(
                    int(v) for k, _, v in (x.partition(":") for x in lines)
                    if k.lower() == "content-length"
                )  # fmt: skip
                body = await self.reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration) as exc:
            raise Unanswered() from exc
        return status, json.loads(body) if body else {}, written

    def close(self) -> None:
        self.writer.close()
