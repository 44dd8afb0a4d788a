"""tally.client's parts that need no server: Retry-After, the backoff, error mapping."""

from __future__ import annotations

import email.utils
import socket
import time

import httpx
import pytest

from tally.client import (
    ApiError,
    AsyncClient,
    Backoff,
    Client,
    ConflictError,
    NotFoundError,
    UnavailableError,
    error_from,
    retry_after,
)


def response(
    status: int, headers: dict[str, str] | None = None, body: bytes = b""
) -> httpx.Response:
    return httpx.Response(status, headers=headers, content=body)


def test_retry_after_forms() -> None:
    """Retry-After as seconds or as an HTTP date; anything else is ignored."""
    assert retry_after(response(429, {"retry-after": "7"})) == 7.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after(response(503, {"retry-after": later})) or 0) <= 30
    assert retry_after(response(503, {"retry-after": "soon"})) is None
    assert retry_after(response(503)) is None


def test_backoff_honours_retry_after_and_caps() -> None:
    """Retry-After wins over the exponential delay; neither exceeds max_delay."""
    b = Backoff(base=0.5, max_delay=10.0, jitter=lambda: 1.0)
    assert b.delay(0, response(429, {"retry-after": "3"})) == 3.0
    assert b.delay(0, response(429, {"retry-after": "3600"})) == 10.0
    assert [b.delay(n, None) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]


def test_one_policy_decides_every_retry() -> None:
    """Backoff.after: 429 always retried, 503 unless the call is a creation, a request
    that never left retried, a lost answer or any other status final, and nothing after
    `retries` attempts."""
    b = Backoff(retries=2, base=0.5, max_delay=10.0, jitter=lambda: 1.0)
    limited = response(429, {"retry-after": "3"})
    assert b.after(0, limited, retry_503=False) == 3.0
    assert b.after(1, response(503), retry_503=True) == 1.0
    assert b.after(0, response(503), retry_503=False) is None
    for status in (200, 400, 404, 409, 500):
        assert b.after(0, response(status), retry_503=True) is None
    request = httpx.Request("GET", "http://127.0.0.1/")
    assert b.after(0, httpx.ConnectError("refused", request=request), retry_503=True) == 0.5
    assert b.after(0, httpx.ReadTimeout("lost", request=request), retry_503=True) is None
    assert b.after(2, limited, retry_503=True) is None
    assert b.after(2, httpx.ConnectError("refused", request=request), retry_503=True) is None


def test_errors_carry_status_and_message() -> None:
    """The documented error body becomes an exception of its status's class."""
    e = error_from(response(404, body=b'{"code":"404","message":"no such counter"}'))
    assert isinstance(e, NotFoundError)
    assert (e.status, e.message) == (404, "no such counter")
    e = error_from(response(503, {"retry-after": "1"}, b"<html>bad gateway</html>"))
    assert isinstance(e, UnavailableError)
    assert e.retry_after == 1.0
    e = error_from(response(409, body=b'{"code":"409","message":"ceiling"}'))
    assert isinstance(e, ConflictError)
    e = error_from(response(418, body=b""))
    assert type(e) is ApiError
    assert e.status == 418


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://api.counterapi.dev", "https://api.counterapi.dev/v2/w/a%2Fb/up"),
        ("http://h:8000/", "http://h:8000/v2/w/a%2Fb/up"),
    ],
)
def test_urls_escape_names(base: str, expected: str) -> None:
    """Names are percent-encoded, '/' included, under any base URL."""
    with Client(base) as c:
        assert c.url("w", "a/b", "up") == expected


class CountingTransport(httpx.HTTPTransport):
    """The real transport, counting the requests it tries to send."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        return super().handle_request(request)


def test_connection_refused_is_retried_then_raised() -> None:
    """A connection that cannot be made is retried `retries` times, then raised."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    transport = CountingTransport()
    http = httpx.Client(transport=transport, trust_env=False)
    base = f"http://127.0.0.1:{port}"
    with (
        Client(base, retries=2, max_delay=0.01, http=http) as c,
        pytest.raises(httpx.ConnectError, match=f"^cannot connect to {base}: .*refused") as got,
    ):
        c.get("w", "c")
    assert transport.attempts == 3
    assert got.value.request.url == f"{base}/v2/w/c"


async def test_async_connection_refused_names_the_server() -> None:
    """The async client's connection error names the server's address too."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    http = httpx.AsyncClient(trust_env=False)
    async with AsyncClient(base, retries=0, http=http) as c:
        with pytest.raises(httpx.ConnectError, match=f"^cannot connect to {base}: "):
            await c.up("w", "c")
