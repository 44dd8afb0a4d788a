"""Real services for the tests (PostgreSQL, Redis) and a TCP proxy to cut them off.

Where a service is not reachable, its tests skip with the reason, except when CI=true:
then they fail, so a missing service can never turn CI green by skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from urllib.parse import urlsplit

import pytest

REDIS_URL = os.environ.get("TALLY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1.0
        ):
            return True
    except OSError:
        return False


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when running in CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: services must be there)", pytrace=False)
    pytest.skip(reason)


def require_redis() -> str:
    if not reachable(REDIS_URL, 6379):
        unavailable(f"Redis is not reachable at {REDIS_URL} (set TALLY_TEST_REDIS_URL)")
    return REDIS_URL


class TcpProxy:
    """A loopback TCP proxy to a service, which a test can cut and restore."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._flowing = asyncio.Event()  # cleared: bytes are held, connections stay open
        self._flowing.set()
        self.server: asyncio.Server | None = None
        self.port = 0
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port or 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for w in list(self._writers):
            w.close()
        for task in list(self._pipes):
            task.cancel()

    def stall(self) -> None:
        """Hold every byte from now on, keeping the connections open: a network that
        drops packets without a word."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(65536):
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
        dst.close()
        self._writers.discard(dst)
