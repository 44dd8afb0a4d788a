"""What a real server refuses before Tally's code runs, and the clients it does not let
hold it: oversized request heads, too many headers, slow heads (slowloris), connection
floods and oversized bodies. Every limit is in docs/security.md."""

from __future__ import annotations

import asyncio
import contextlib
import time

from tally.server import HEADER_READ_TIMEOUT, MAX_REQUEST_HEAD
from tally.site.security import MAX_FORM_BODY

from .conftest import ServerFactory
from .server import HOST, TallyServer


async def raw(port: int, request: bytes, within: float = 10.0) -> tuple[int | None, bytes]:
    """Send `request` on a new connection: the answer's status and body, or (None, b"") if
    the server closed without answering."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        async with asyncio.timeout(within):
            data = await reader.read()
    except ConnectionError:
        return None, b""
    finally:
        writer.close()
    if not data.startswith(b"HTTP/1."):
        return None, b""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def get(path: bytes, *headers: bytes) -> bytes:
    lines = [b"GET " + path + b" HTTP/1.1", b"Host: x", b"Connection: close", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def healthy(server: TallyServer) -> None:
    """The server answers /healthz at once on a new connection."""
    status, body = await raw(server.port, get(b"/healthz"), within=5)
    assert status == 200, (body, server.output())


async def test_the_request_head_limit(make_server: ServerFactory) -> None:
    """A request head over MAX_REQUEST_HEAD (16 KB) never reaches Tally: granian answers
    431 or closes; one just under it does (401 for the bad token); so do 300 KB and 60 KB
    heads (refused), a 16 KB path, and a thousand small headers. The server serves on."""
    assert MAX_REQUEST_HEAD == 16 * 1024
    server = make_server()
    for size in (300_000, 60_000, MAX_REQUEST_HEAD + 1):
        big = b"Authorization: Bearer tly_" + b"x" * size
        status, _ = await raw(server.port, get(b"/v2/default/c", big))
        assert status in (None, 400, 413, 431), (size, status)
    fits = b"Authorization: Bearer tly_" + b"x" * (MAX_REQUEST_HEAD - 200)
    status, body = await raw(server.port, get(b"/v2/default/c", fits))
    assert status == 401, body
    long_path = b"/v2/default/" + b"p" * (MAX_REQUEST_HEAD + 1)
    assert (await raw(server.port, get(long_path)))[0] in (None, 400, 414, 431)
    many = [b"X-H%d: v" % i for i in range(1000)]
    assert (await raw(server.port, get(b"/healthz", *many)))[0] in (None, 400, 431)
    await healthy(server)


async def test_a_slow_request_head_is_cut(make_server: ServerFactory) -> None:
    """slowloris: a client that sends its head one byte a second, never finishing, is
    disconnected within HEADER_READ_TIMEOUT (plus slack), and other clients are served
    meanwhile; so is one that connects and sends nothing."""
    server = make_server()
    silent_reader, silent_writer = await asyncio.open_connection(HOST, server.port)
    reader, writer = await asyncio.open_connection(HOST, server.port)
    started = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    closed_after: float | None = None
    for i in range(int(HEADER_READ_TIMEOUT) + 10):
        try:
            writer.write(b"X-Slow-%d: a\r\n" % i)
            await writer.drain()
            async with asyncio.timeout(1.0):
                if await reader.read(1024) == b"":
                    closed_after = time.monotonic() - started
                    break
        except TimeoutError:
            pass
        except ConnectionError:
            closed_after = time.monotonic() - started
            break
        if i == 3:
            await healthy(server)  # the slow client holds nothing others need
    writer.close()
    assert closed_after is not None, "a head that never ends kept its connection"
    assert closed_after <= HEADER_READ_TIMEOUT + 5, closed_after
    async with asyncio.timeout(5):
        assert await silent_reader.read() == b""  # the silent one was cut as well
    silent_writer.close()
    await healthy(server)


async def test_a_connection_flood(make_server: ServerFactory) -> None:
    """500 connections opened and held idle, then 2,000 opened and dropped at once: the
    server keeps answering a new client, and after the flood it is healthy."""
    server = make_server()
    held: list[asyncio.StreamWriter] = []
    try:
        for _ in range(500):
            _reader, writer = await asyncio.open_connection(HOST, server.port)
            held.append(writer)
        await healthy(server)

        async def touch_and_go() -> None:
            with contextlib.suppress(OSError):
                _r, w = await asyncio.open_connection(HOST, server.port)
                w.close()

        for _ in range(4):
            await asyncio.gather(*(touch_and_go() for _ in range(500)))
        await healthy(server)
        half_request = b"GET /healthz HTTP/1.1\r\n"  # heads begun and never finished
        for writer in held[:250]:
            writer.write(half_request)
        await healthy(server)
    finally:
        for writer in held:
            writer.close()
    await healthy(server)
    assert server.running


async def test_an_oversized_body_is_413(make_server: ServerFactory) -> None:
    """The website reads at most 64 KB of a body: a declared bigger one is a 413 before
    any is read, as is one that turns out bigger (chunked); a management API body over
    16 KB is a 400 in the API's JSON shape. The server serves on."""
    server = make_server()
    huge = b"Content-Length: 1000000000000"
    post = b"POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    status, body = await raw(server.port, post + huge + b"\r\n\r\n")
    assert status == 413, body
    form = b"email=" + b"a" * MAX_FORM_BODY
    chunked = b"Transfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded"
    payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(form), form)
    status, body = await raw(server.port, post + chunked + b"\r\n\r\n" + payload)
    assert status == 413, body
    api = b"POST /v2/default/-/counters HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    big = b"{" + b" " * 20_000 + b"}"
    status, body = await raw(
        server.port, api + b"Content-Length: %d\r\n\r\n" % len(big) + big
    )  # no token: refused before the body matters
    assert status in (400, 401), body
    assert body.startswith(b'{"code":"'), body
    await healthy(server)
