"""`tally.client`: call Tally (or any CounterAPI V2 server) from Python.

    from tally.client import Client

    with Client("http://127.0.0.1:8000", token="tly_...") as tally:
        counter = tally.up("default", "downloads")
        print(counter.value)

`AsyncClient` has the same methods, awaited. Results are typed (`Counter`,
`CounterStats`); every answer but a 2xx raises `ApiError` (or the subclass of its
status) carrying `status` and `message`. A 429 or 503 is retried, `retries` times at
most, after the answer's `Retry-After` or else an exponential backoff (never longer than
`max_delay` seconds): Tally counts nothing for either, so the retry of an `up` counts
once. A request that could not connect is retried the same way; one whose answer was
lost is not (it may have been counted).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "Counter",
    "CounterStats",
    "ForbiddenError",
    "NotFoundError",
    "RateLimitedError",
    "UnauthorizedError",
    "UnavailableError",
]

ACTIONS = ("up", "down", "reset", "stats")
RETRIED = frozenset((429, 503))
# the request never reached the server: safe to send again, even an `up`


class ApiError(Exception):
    """The server answered an error: `status` (an int) and its `message`."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after  # seconds, from Retry-After, if the answer had one


class UnauthorizedError(ApiError):
    """401: the token is unknown, malformed or revoked, or the action needs one."""


class ForbiddenError(ApiError):
    """403: the token lacks the permission, or belongs to another workspace."""


class NotFoundError(ApiError):
    """404: no such workspace or counter (or a private one this token may not see)."""


class RateLimitedError(ApiError):
    """429: over the rate limit, still after the retries."""


class UnavailableError(ApiError):
    """503: the database is unavailable, still after the retries; nothing was counted."""


_ERRORS: dict[int, type[ApiError]] = {
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    429: RateLimitedError,
    503: UnavailableError,
}


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Counter:
    """A counter as the server answered it (CounterAPI V2 `data`)."""

    id: int
    name: str
    workspace_slug: str
    up_count: int
    down_count: int
    value: int
    private: bool
    description: str
    created_at: datetime | None
    updated_at: datetime | None
    raw: Mapping[str, Any]  # the whole `data` object, fields this class does not name too

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Counter:
        up, down = int(data.get("up_count", 0)), int(data.get("down_count", 0))
        return cls(
            id=int(data.get("id", 0)),
            name=str(data.get("name", "")),
            workspace_slug=str(data.get("workspace_slug", "")),
            up_count=up,
            down_count=down,
            value=int(data.get("value", up - down)),
            private=bool(data.get("private", False)),
            description=str(data.get("description") or ""),
            created_at=_time(data.get("created_at")),
            updated_at=_time(data.get("updated_at")),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class CounterStats:
    """A counter's totals and its time breakdown (docs/stats.md describes `stats`)."""

    counter_id: int
    up_count: int
    down_count: int
    stats: Mapping[str, Any]
    created_at: datetime | None
    updated_at: datetime | None
    raw: Mapping[str, Any]

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> CounterStats:
        return cls(
            counter_id=int(data.get("counter_id", data.get("id", 0))),
            up_count=int(data.get("up_count", 0)),
            down_count=int(data.get("down_count", 0)),
            stats=data.get("stats") or {},
            created_at=_time(data.get("created_at")),
            updated_at=_time(data.get("updated_at")),
            raw=data,
        )


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), if there is one."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from(response: httpx.Response) -> ApiError:
    """The exception for an answer that is not a 2xx."""
    message = response.reason_phrase or "error"
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            message = body["message"]
    except ValueError:
        if response.text.strip():
            message = response.text.strip()[:200]
    kind = _ERRORS.get(response.status_code, ApiError)
    return kind(response.status_code, message, retry_after(response))


def data_of(response: httpx.Response) -> Mapping[str, Any]:
    """The `data` object of a success envelope; ApiError for anything else."""
    if not response.is_success:
        raise error_from(response)
    try:
        body = response.json()
    except ValueError:
        raise ApiError(response.status_code, "the answer is not JSON") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise ApiError(response.status_code, "the answer has no `data` object")
    return data


@dataclass(frozen=True, slots=True)
class Backoff:
    """When to retry: Retry-After if given, else base * 2**attempt with jitter; never
    longer than `max_delay`."""

    retries: int = 3
    base: float = 0.5
    max_delay: float = 30.0
    jitter: Callable[[], float] = random.random

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        told = retry_after(response) if response is not None else None
        if told is None:
            told = self.base * 2**attempt * (0.5 + self.jitter() / 2)
        return min(told, self.max_delay)


class _Base:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        retries: int,
        max_delay: float,
        timeout: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.backoff = Backoff(retries=retries, max_delay=max_delay)
        self.timeout = timeout
        self.headers = {"Accept": "application/json", "User-Agent": "tally-client"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def url(self, workspace: str, name: str, action: str = "") -> str:
        if action and action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        path = f"/v2/{quote(workspace, safe='')}/{quote(name, safe='')}"
        return f"{self.base_url}{path}/{action}" if action else f"{self.base_url}{path}"


class Client(_Base):
    """A synchronous client; use it as a context manager or call `close()`."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        retries: int = 3,
        max_delay: float = 30.0,
        timeout: float = 10.0,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, token, retries, max_delay, timeout)
        self.http = http or httpx.Client(timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(self, url: str) -> Mapping[str, Any]:
        """GET `url` with the retries; the `data` of its answer."""
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self.http.get(url, headers=self.headers)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if attempt >= self.backoff.retries:
                    raise
            else:
                if response.status_code not in RETRIED or attempt >= self.backoff.retries:
                    return data_of(response)
            time.sleep(self.backoff.delay(attempt, response))
            attempt += 1

    def get(self, workspace: str, name: str) -> Counter:
        return Counter.from_data(self.request(self.url(workspace, name)))

    def up(self, workspace: str, name: str) -> Counter:
        return Counter.from_data(self.request(self.url(workspace, name, "up")))

    def down(self, workspace: str, name: str) -> Counter:
        return Counter.from_data(self.request(self.url(workspace, name, "down")))

    def reset(self, workspace: str, name: str) -> Counter:
        return Counter.from_data(self.request(self.url(workspace, name, "reset")))

    def stats(self, workspace: str, name: str) -> CounterStats:
        return CounterStats.from_data(self.request(self.url(workspace, name, "stats")))


class AsyncClient(_Base):
    """The asynchronous client; use it as an async context manager or `await aclose()`."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        retries: int = 3,
        max_delay: float = 30.0,
        timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, token, retries, max_delay, timeout)
        self.http = http or httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, url: str) -> Mapping[str, Any]:
        """GET `url` with the retries; the `data` of its answer."""
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self.http.get(url, headers=self.headers)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if attempt >= self.backoff.retries:
                    raise
            else:
                if response.status_code not in RETRIED or attempt >= self.backoff.retries:
                    return data_of(response)
            await asyncio.sleep(self.backoff.delay(attempt, response))
            attempt += 1

    async def get(self, workspace: str, name: str) -> Counter:
        return Counter.from_data(await self.request(self.url(workspace, name)))

    async def up(self, workspace: str, name: str) -> Counter:
        return Counter.from_data(await self.request(self.url(workspace, name, "up")))

    async def down(self, workspace: str, name: str) -> Counter:
        return Counter.from_data(await self.request(self.url(workspace, name, "down")))

    async def reset(self, workspace: str, name: str) -> Counter:
        return Counter.from_data(await self.request(self.url(workspace, name, "reset")))

    async def stats(self, workspace: str, name: str) -> CounterStats:
        return CounterStats.from_data(await self.request(self.url(workspace, name, "stats")))
