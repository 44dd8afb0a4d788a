"""What a real server refuses before Tally's code runs: oversized request heads."""

from __future__ import annotations

import asyncio

from .conftest import ServerFactory
from .server import HOST


async def _status_of_raw(port: int, request: bytes) -> int | None:
    """The status code of the answer to `request`, or None if the server closed."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            line = await reader.readline()
    except (ConnectionError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()
    return int(line.split()[1]) if line.startswith(b"HTTP/1.") else None


async def test_a_request_head_over_64_kb_is_refused(make_server: ServerFactory) -> None:
    """A 300 KB Authorization header never reaches Tally (granian refuses it, or closes),
    a 60 KB one does (401), and the server serves on."""
    server = make_server()
    big = b"Bearer tly_" + b"x" * 300_000
    request = b"GET /v2/default/c HTTP/1.1\r\nHost: x\r\nAuthorization: " + big + b"\r\n\r\n"
    assert await _status_of_raw(server.port, request) in (None, 400, 413, 431)
    fits = b"Bearer tly_" + b"x" * 60_000
    request = b"GET /v2/default/c HTTP/1.1\r\nHost: x\r\nAuthorization: " + fits + b"\r\n\r\n"
    assert await _status_of_raw(server.port, request) == 401
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readline()).split()[1] == b"200"
    writer.close()
