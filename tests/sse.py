"""An in-process client for the live stream: drives the ASGI app directly, because httpx's
ASGI transport hands over a response only once it is complete."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from tally.web.app import App
from tally.web.http import Message


@dataclass
class Event:
    id: str | None
    data: dict[str, Any] | None
    comment: str | None
    at: float  # monotonic time the server sent it
    name: str | None = None  # the `event:` field (`end`: the stream ends, saying why)


@dataclass
class OpenStream:
    """One GET on the app whose response is read as it comes."""

    app: App
    path: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    client: tuple[str, int] = ("198.51.100.7", 40000)
    status: int = 0
    response_headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False

    def __post_init__(self) -> None:
        self._started = asyncio.Event()
        self._chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._requested = False
        self.task: asyncio.Task[None] | None = None
        self._buffer = b""

    async def open(self, within: float = 10.0) -> OpenStream:
        path, _, query = self.path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": [(b"host", b"tally.test"), *self.headers],
            "client": self.client,
            "server": ("tally.test", 80),
        }
        self.task = asyncio.get_running_loop().create_task(
            self.app(scope, self._receive, self._send)
        )
        async with asyncio.timeout(within):
            await self._started.wait()
        return self

    async def _receive(self) -> Message:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        if self._gone.is_set():
            raise OSError("the client is gone")
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.response_headers = dict(message["headers"])
            self._started.set()
        else:
            chunk = message.get("body", b"")
            self.body += chunk
            self._chunks.put_nowait((time.monotonic(), chunk))
            if not message.get("more_body", False):
                self.ended = True
                self._chunks.put_nowait((time.monotonic(), b""))

    async def next_event(self, within: float = 10.0) -> Event | None:
        """The next event or comment; None once the response has ended."""
        async with asyncio.timeout(within):
            while b"\n\n" not in self._buffer:
                at, chunk = await self._chunks.get()
                if not chunk and self.ended:
                    return None
                self._buffer += chunk
                self._at = at
        raw, self._buffer = self._buffer.split(b"\n\n", 1)
        fields: dict[str, str] = {}
        comment = None
        for line in raw.decode().split("\n"):
            if line.startswith(":"):
                comment = line[1:].strip()
            else:
                key, _, value = line.partition(": ")
                fields[key] = value
        data = orjson.loads(fields["data"]) if "data" in fields else None
        return Event(fields.get("id"), data, comment, self._at, fields.get("event"))

    async def next_data(self, within: float = 10.0) -> dict[str, Any]:
        """The data of the next event that has some (heartbeats skipped)."""
        async with asyncio.timeout(within):
            while True:
                event = await self.next_event(within)
                assert event is not None, "the stream ended"
                assert event.name is None, f"the stream ended: {event.data}"
                if event.data is not None:
                    return event.data

    async def ended_with(self, within: float = 10.0) -> tuple[dict[str, Any], float]:
        """The `end` event's data and when it came (values and heartbeats before it are
        skipped); then the response must be complete."""
        async with asyncio.timeout(within):
            while True:
                event = await self.next_event(within)
                assert event is not None, "the stream ended without an end event"
                if event.name is not None:
                    assert event.name == "end", event
                    assert event.data is not None
                    assert await self.next_event(within) is None, "more after the end event"
                    return event.data, event.at

    def drop(self) -> None:
        """The client goes away without a word."""
        self._gone.set()

    async def closed(self, within: float = 10.0) -> None:
        """Wait until the app is done with this request."""
        assert self.task is not None
        async with asyncio.timeout(within):
            with contextlib.suppress(Exception):
                await self.task

    def json(self) -> Any:
        return orjson.loads(bytes(self.body))


def bearer(token: str | None) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())] if token else []
