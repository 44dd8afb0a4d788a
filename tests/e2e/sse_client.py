"""A raw Server-Sent Events client on asyncio streams, for real servers: open many
streams cheaply, read their events as they come, drop them without a word."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from .server import HOST

# a value's data line; an `end` event's is not one (see end_event)
_EVENT = re.compile(rb"(?:^|\n)(?<!event: end\n)data: (\{[^\n]*\})\n\n")
_END = re.compile(rb"event: end\ndata: (\{[^\n]*\})\n\n")


@dataclass
class RawStream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int = 0
    head: bytes = b""
    buffer: bytes = b""
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    async def open(
        cls,
        port: int,
        path: str,
        headers: dict[str, str] | None = None,
        within: float = 10.0,
        host: str = HOST,
    ) -> RawStream:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(host, port)
            lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}"]
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await writer.drain()
            stream = cls(reader, writer)
            stream.head = await reader.readuntil(b"\r\n\r\n")
            stream.status = int(stream.head.split(b" ", 2)[1])
        return stream

    async def next_data(self, within: float = 10.0) -> dict[str, Any]:
        """The next event's data (events are sent whole, one chunk each)."""
        async with asyncio.timeout(within):
            while True:
                m = _EVENT.search(self.buffer)
                if m is not None:
                    self.buffer = self.buffer[m.end() :]
                    data: dict[str, Any] = orjson.loads(m.group(1))
                    self.received.append((time.monotonic(), data))
                    return data
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise EOFError("the stream ended")
                self.buffer += chunk

    async def end_event(self, within: float = 10.0) -> tuple[dict[str, Any], float]:
        """The data of the `end` event that ends the stream, and when it came (values
        and heartbeats before it are skipped); the response must end right after it."""
        async with asyncio.timeout(within):
            while True:
                m = _END.search(self.buffer)
                if m is not None:
                    at = time.monotonic()
                    data: dict[str, Any] = orjson.loads(m.group(1))
                    rest = self.buffer[m.end() :]
                    self.buffer = rest
                    await self.until_end(within)
                    return data, at
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise EOFError("the stream ended without an end event")
                self.buffer += chunk

    async def until_end(self, within: float = 10.0) -> bytes:
        """Everything until the server ends the response (its last chunk)."""
        async with asyncio.timeout(within):
            while not self.buffer.endswith(b"0\r\n\r\n"):
                chunk = await self.reader.read(65536)
                if not chunk:
                    break
                self.buffer += chunk
        return self.buffer

    def drop(self) -> None:
        """Close the socket at once (RST-like for the server: no more reads)."""
        self.writer.transport.abort()
