"""`tally.client`: call Tally (or any CounterAPI V2 server) from Python.

    from tally.client import Client

    with Client("http://127.0.0.1:8000", token="tly_...") as tally:
        counter = tally.up("default", "downloads", by=5)
        print(counter.value)

`AsyncClient` has the same methods, awaited. Results are typed (tally.client_types);
every answer but a 2xx raises `ApiError` (or the subclass of its status) carrying
`status` and `message`. The management API (an Admin token's counters, tokens and
settings) is there too.

Retries: one policy, `Backoff`, decides for both clients. A 429 is retried `retries`
times at most, after the answer's `Retry-After` or else an exponential backoff (never
longer than `max_delay` seconds): Tally refuses it before doing anything. A 503 is
retried the same way by every call but the management API's creations: Tally counts
nothing for a 503 of the V2 endpoints, and the other calls are idempotent, but a
creation answered 503 may have been made. A request that could not connect is retried;
one whose answer was lost is not (it may have been counted).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import quote

import httpx

from tally.client_types import (
    ApiError,
    BadRequestError,
    ConflictError,
    Counter,
    CounterPage,
    CounterStats,
    ForbiddenError,
    ManagedCounter,
    NotFoundError,
    RateLimitedError,
    TokenInfo,
    UnauthorizedError,
    UnavailableError,
    WorkspaceSettings,
    data_of,
    error_from,
    retry_after,
)

__all__ = [
    "UNSET",
    "ApiError",
    "AsyncClient",
    "Backoff",
    "BadRequestError",
    "Client",
    "ConflictError",
    "Counter",
    "CounterPage",
    "CounterStats",
    "ForbiddenError",
    "ManagedCounter",
    "NotFoundError",
    "RateLimitedError",
    "TokenInfo",
    "UnauthorizedError",
    "UnavailableError",
    "WorkspaceSettings",
    "error_from",
    "retry_after",
]

ACTIONS = ("up", "down", "reset", "stats", "set")
# the request never reached the server: safe to send again, even an `up`
UNSENT = (httpx.ConnectError, httpx.ConnectTimeout)
T = TypeVar("T")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # a field a change leaves as it is (None means "none" there)

Outcome = httpx.Response | httpx.TransportError


@dataclass(frozen=True, slots=True)
class Backoff:
    """The retry policy both clients drive: `after` says whether to try again and when.
    Retry-After if the answer gives one, else base * 2**attempt with jitter; never
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

    def after(self, attempt: int, outcome: Outcome, retry_503: bool) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None: `outcome` is final."""
        if attempt >= self.retries:
            return None
        if isinstance(outcome, httpx.Response):
            status = outcome.status_code
            if status == 429 or (status == 503 and retry_503):
                return self.delay(attempt, outcome)
            return None
        return self.delay(attempt, None) if isinstance(outcome, UNSENT) else None


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and how to read its answer's `data`."""

    method: str
    url: str
    parse: Callable[[Mapping[str, Any]], T]
    params: Mapping[str, str | int] | None = None
    body: Mapping[str, Any] | None = None
    retry_503: bool = True

    def result(self, outcome: Outcome) -> T:
        if not isinstance(outcome, httpx.Response):
            raise outcome
        return self.parse(data_of(outcome))


def _changes(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not UNSET}


def _no_data(_data: Mapping[str, Any]) -> None:
    return None


class _Base:
    """What both clients share: the URLs, the headers and the calls they make."""

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

    def _named(self, outcome: Outcome) -> Outcome:
        """A connection that could not be made, as the same httpx error naming the
        server's address ("[Errno 111] Connection refused" alone does not)."""
        if not isinstance(outcome, UNSENT):
            return outcome
        try:
            request: httpx.Request | None = outcome.request
        except RuntimeError:  # an httpx error made without its request
            request = None
        named = type(outcome)(f"cannot connect to {self.base_url}: {outcome}", request=request)
        named.__cause__ = outcome
        return named

    def url(self, workspace: str, name: str, action: str = "") -> str:
        if action and action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        path = f"/v2/{quote(workspace, safe='')}/{quote(name, safe='')}"
        return f"{self.base_url}{path}/{action}" if action else f"{self.base_url}{path}"

    def manage_url(self, workspace: str, kind: str, item: int | None = None) -> str:
        url = f"{self.base_url}/v2/{quote(workspace, safe='')}/-/{kind}"
        return url if item is None else f"{url}/{int(item)}"

    # the V2 endpoints ----------------------------------------------------------------

    def _counter(self, workspace: str, name: str, action: str = "", **params: int) -> Call[Counter]:
        url = self.url(workspace, name, action)
        return Call("GET", url, Counter.from_data, params or None)

    def _count(self, workspace: str, name: str, action: str, by: int) -> Call[Counter]:
        if type(by) is not int or by < 1:
            raise ValueError("by must be a whole number of at least 1")
        return self._counter(workspace, name, action, **({"by": by} if by != 1 else {}))

    def _stats(self, workspace: str, name: str) -> Call[CounterStats]:
        return Call("GET", self.url(workspace, name, "stats"), CounterStats.from_data)

    def _set(self, workspace: str, name: str, up_count: int, down_count: int) -> Call[Counter]:
        return self._counter(workspace, name, "set", up_count=up_count, down_count=down_count)

    # the management API --------------------------------------------------------------

    def _list_counters(self, workspace: str, q: str, limit: int, offset: int) -> Call[CounterPage]:
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        if q:
            params["q"] = q
        return Call("GET", self.manage_url(workspace, "counters"), CounterPage.from_data, params)

    def _create_counter(
        self, workspace: str, name: str, description: str, private: bool
    ) -> Call[ManagedCounter]:
        body = {
            "name": name,
            "description": description,
            "visibility": "private" if private else "public",
        }
        url = self.manage_url(workspace, "counters")
        return Call("POST", url, ManagedCounter.from_data, body=body, retry_503=False)

    def _managed(self, workspace: str, counter_id: int) -> Call[ManagedCounter]:
        url = self.manage_url(workspace, "counters", counter_id)
        return Call("GET", url, ManagedCounter.from_data)

    def _update_counter(
        self, workspace: str, counter_id: int, changes: dict[str, Any]
    ) -> Call[ManagedCounter]:
        if "private" in changes:
            changes["visibility"] = "private" if changes.pop("private") else "public"
        if "allowed_origins" in changes:
            changes["allowed_origins"] = list(changes["allowed_origins"])
        url = self.manage_url(workspace, "counters", counter_id)
        return Call("PATCH", url, ManagedCounter.from_data, body=changes)

    def _delete_counter(self, workspace: str, counter_id: int) -> Call[None]:
        return Call("DELETE", self.manage_url(workspace, "counters", counter_id), _no_data)

    def _list_tokens(self, workspace: str) -> Call[list[TokenInfo]]:
        return Call("GET", self.manage_url(workspace, "tokens"), TokenInfo.list_from_data)

    def _create_token(
        self, workspace: str, permission: str, name: str, expires_in_days: int | None
    ) -> Call[TokenInfo]:
        body: dict[str, Any] = {"permission": permission, "name": name}
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        url = self.manage_url(workspace, "tokens")
        return Call("POST", url, TokenInfo.from_data, body=body, retry_503=False)

    def _revoke_token(self, workspace: str, token_id: int) -> Call[TokenInfo]:
        return Call("DELETE", self.manage_url(workspace, "tokens", token_id), TokenInfo.from_data)

    def _settings(
        self, workspace: str, changes: dict[str, Any] | None = None
    ) -> Call[WorkspaceSettings]:
        url = self.manage_url(workspace, "settings")
        if changes is None:
            return Call("GET", url, WorkspaceSettings.from_data)
        if "allowed_origins" in changes:
            changes["allowed_origins"] = list(changes["allowed_origins"])
        return Call("PATCH", url, WorkspaceSettings.from_data, body=changes)


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

    def run(self, call: Call[T]) -> T:
        """Send `call`, retried as `Backoff.after` says; its parsed answer."""
        outcome: Outcome = httpx.ConnectError("not sent")
        for attempt in range(max(0, self.backoff.retries) + 1):
            try:
                outcome = self.http.request(
                    call.method, call.url, params=call.params, json=call.body, headers=self.headers
                )
            except httpx.TransportError as exc:
                outcome = exc
            delay = self.backoff.after(attempt, outcome, call.retry_503)
            if delay is None:
                break
            time.sleep(delay)
        return call.result(self._named(outcome))

    def get(self, workspace: str, name: str) -> Counter:
        return self.run(self._counter(workspace, name))

    def up(self, workspace: str, name: str, by: int = 1) -> Counter:
        """Count `by` up (more than 1 needs a Write token of the workspace)."""
        return self.run(self._count(workspace, name, "up", by))

    def down(self, workspace: str, name: str, by: int = 1) -> Counter:
        return self.run(self._count(workspace, name, "down", by))

    def reset(self, workspace: str, name: str) -> Counter:
        return self.run(self._counter(workspace, name, "reset"))

    def set(self, workspace: str, name: str, up_count: int, down_count: int = 0) -> Counter:
        """Set the totals (an Admin token of the workspace)."""
        return self.run(self._set(workspace, name, up_count, down_count))

    def stats(self, workspace: str, name: str) -> CounterStats:
        return self.run(self._stats(workspace, name))

    def list_counters(
        self, workspace: str, q: str = "", *, limit: int = 50, offset: int = 0
    ) -> CounterPage:
        return self.run(self._list_counters(workspace, q, limit, offset))

    def create_counter(
        self, workspace: str, name: str, *, description: str = "", private: bool = False
    ) -> ManagedCounter:
        return self.run(self._create_counter(workspace, name, description, private))

    def counter(self, workspace: str, counter_id: int) -> ManagedCounter:
        return self.run(self._managed(workspace, counter_id))

    def update_counter(
        self,
        workspace: str,
        counter_id: int,
        *,
        description: str = UNSET,
        private: bool = UNSET,
        allowed_origins: tuple[str, ...] | list[str] = UNSET,
        floor: int | None = UNSET,
        ceiling: int | None = UNSET,
        unique: int | bool | None = UNSET,
        unique_by: str = UNSET,
    ) -> ManagedCounter:
        """Change the fields given (None clears a bound, () the origins). `unique` is the
        unique-visitor window in seconds (3600 to 2592000), True for 24 h, False or None
        for off; `unique_by` "address_agent" or "address" (a visitor is its address
        alone). A new bound the counter's value already breaks is a ConflictError."""
        changes = _changes(
            description=description,
            private=private,
            allowed_origins=allowed_origins,
            floor=floor,
            ceiling=ceiling,
            unique=unique,
            unique_by=unique_by,
        )
        return self.run(self._update_counter(workspace, counter_id, changes))

    def delete_counter(self, workspace: str, counter_id: int) -> None:
        return self.run(self._delete_counter(workspace, counter_id))

    def list_tokens(self, workspace: str) -> list[TokenInfo]:
        return self.run(self._list_tokens(workspace))

    def create_token(
        self, workspace: str, permission: str, *, name: str = "", expires_in_days: int | None = None
    ) -> TokenInfo:
        """A new token; its `secret` is in this answer only."""
        return self.run(self._create_token(workspace, permission, name, expires_in_days))

    def revoke_token(self, workspace: str, token_id: int) -> TokenInfo:
        return self.run(self._revoke_token(workspace, token_id))

    def settings(self, workspace: str) -> WorkspaceSettings:
        return self.run(self._settings(workspace))

    def update_settings(
        self,
        workspace: str,
        *,
        v1_open: bool = UNSET,
        allowed_origins: tuple[str, ...] | list[str] = UNSET,
        page_views: bool = UNSET,
        honour_dnt: bool = UNSET,
    ) -> WorkspaceSettings:
        changes = _changes(
            v1_open=v1_open,
            allowed_origins=allowed_origins,
            page_views=page_views,
            honour_dnt=honour_dnt,
        )
        return self.run(self._settings(workspace, changes))


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

    async def run(self, call: Call[T]) -> T:
        """Send `call`, retried as `Backoff.after` says; its parsed answer."""
        outcome: Outcome = httpx.ConnectError("not sent")
        for attempt in range(max(0, self.backoff.retries) + 1):
            try:
                outcome = await self.http.request(
                    call.method, call.url, params=call.params, json=call.body, headers=self.headers
                )
            except httpx.TransportError as exc:
                outcome = exc
            delay = self.backoff.after(attempt, outcome, call.retry_503)
            if delay is None:
                break
            await asyncio.sleep(delay)
        return call.result(self._named(outcome))

    async def get(self, workspace: str, name: str) -> Counter:
        return await self.run(self._counter(workspace, name))

    async def up(self, workspace: str, name: str, by: int = 1) -> Counter:
        """Count `by` up (more than 1 needs a Write token of the workspace)."""
        return await self.run(self._count(workspace, name, "up", by))

    async def down(self, workspace: str, name: str, by: int = 1) -> Counter:
        return await self.run(self._count(workspace, name, "down", by))

    async def reset(self, workspace: str, name: str) -> Counter:
        return await self.run(self._counter(workspace, name, "reset"))

    async def set(self, workspace: str, name: str, up_count: int, down_count: int = 0) -> Counter:
        """Set the totals (an Admin token of the workspace)."""
        return await self.run(self._set(workspace, name, up_count, down_count))

    async def stats(self, workspace: str, name: str) -> CounterStats:
        return await self.run(self._stats(workspace, name))

    async def list_counters(
        self, workspace: str, q: str = "", *, limit: int = 50, offset: int = 0
    ) -> CounterPage:
        return await self.run(self._list_counters(workspace, q, limit, offset))

    async def create_counter(
        self, workspace: str, name: str, *, description: str = "", private: bool = False
    ) -> ManagedCounter:
        return await self.run(self._create_counter(workspace, name, description, private))

    async def counter(self, workspace: str, counter_id: int) -> ManagedCounter:
        return await self.run(self._managed(workspace, counter_id))

    async def update_counter(
        self,
        workspace: str,
        counter_id: int,
        *,
        description: str = UNSET,
        private: bool = UNSET,
        allowed_origins: tuple[str, ...] | list[str] = UNSET,
        floor: int | None = UNSET,
        ceiling: int | None = UNSET,
        unique: int | bool | None = UNSET,
        unique_by: str = UNSET,
    ) -> ManagedCounter:
        """Change the fields given (None clears a bound, () the origins). `unique` is the
        unique-visitor window in seconds (3600 to 2592000), True for 24 h, False or None
        for off; `unique_by` "address_agent" or "address" (a visitor is its address
        alone). A new bound the counter's value already breaks is a ConflictError."""
        changes = _changes(
            description=description,
            private=private,
            allowed_origins=allowed_origins,
            floor=floor,
            ceiling=ceiling,
            unique=unique,
            unique_by=unique_by,
        )
        return await self.run(self._update_counter(workspace, counter_id, changes))

    async def delete_counter(self, workspace: str, counter_id: int) -> None:
        return await self.run(self._delete_counter(workspace, counter_id))

    async def list_tokens(self, workspace: str) -> list[TokenInfo]:
        return await self.run(self._list_tokens(workspace))

    async def create_token(
        self, workspace: str, permission: str, *, name: str = "", expires_in_days: int | None = None
    ) -> TokenInfo:
        """A new token; its `secret` is in this answer only."""
        return await self.run(self._create_token(workspace, permission, name, expires_in_days))

    async def revoke_token(self, workspace: str, token_id: int) -> TokenInfo:
        return await self.run(self._revoke_token(workspace, token_id))

    async def settings(self, workspace: str) -> WorkspaceSettings:
        return await self.run(self._settings(workspace))

    async def update_settings(
        self,
        workspace: str,
        *,
        v1_open: bool = UNSET,
        allowed_origins: tuple[str, ...] | list[str] = UNSET,
        page_views: bool = UNSET,
        honour_dnt: bool = UNSET,
    ) -> WorkspaceSettings:
        changes = _changes(
            v1_open=v1_open,
            allowed_origins=allowed_origins,
            page_views=page_views,
            honour_dnt=honour_dnt,
        )
        return await self.run(self._settings(workspace, changes))
