"""What `tally.client` answers and raises: typed results and the error hierarchy.

Results keep the whole `data` object they came from in `raw`, so fields a newer server
adds are not lost.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx


class ApiError(Exception):
    """The server answered an error: `status` (an int) and its `message`."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after  # seconds, from Retry-After, if the answer had one


class BadRequestError(ApiError):
    """400: a bad name, parameter or body; nothing was changed."""


class UnauthorizedError(ApiError):
    """401: the token is unknown, malformed or revoked, or the action needs one."""


class ForbiddenError(ApiError):
    """403: the token lacks the permission, or an origin the counter does not allow."""


class NotFoundError(ApiError):
    """404: no such workspace, counter or token (or one this token may not see)."""


class ConflictError(ApiError):
    """409: a bound would be crossed (nothing counted), or a name is taken."""


class RateLimitedError(ApiError):
    """429: over the rate limit, still after the retries."""


class UnavailableError(ApiError):
    """503: the database is unavailable, still after the retries; nothing was counted."""


ERRORS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitedError,
    503: UnavailableError,
}


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _bound(value: object) -> int | None:
    return None if value is None else int(str(value))


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


@dataclass(frozen=True, slots=True)
class ManagedCounter:
    """A counter as the management API shows it: settings, rules and committed totals."""

    id: int
    name: str
    description: str
    private: bool
    up_count: int
    down_count: int
    value: int
    floor: int | None
    ceiling: int | None
    allowed_origins: tuple[str, ...]  # its own list; () takes the workspace's
    unique: int | None  # the unique-visitor window in seconds; None: off
    unique_by: str  # "address_agent" or "address": how visitors are told apart
    created_at: datetime | None
    updated_at: datetime | None
    raw: Mapping[str, Any]

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ManagedCounter:
        up, down = int(data.get("up_count", 0)), int(data.get("down_count", 0))
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            description=str(data.get("description") or ""),
            private=bool(data.get("private", False)),
            up_count=up,
            down_count=down,
            value=int(data.get("value", up - down)),
            floor=_bound(data.get("floor")),
            ceiling=_bound(data.get("ceiling")),
            allowed_origins=tuple(data.get("allowed_origins") or ()),
            unique=_bound(data.get("unique")) or None,
            unique_by=str(data.get("unique_by") or "address_agent"),
            created_at=_time(data.get("created_at")),
            updated_at=_time(data.get("updated_at")),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class CounterPage:
    """One page of a workspace's counters, and how many match in all."""

    counters: tuple[ManagedCounter, ...]
    total: int
    limit: int
    offset: int
    next: str | None = None  # the cursor of the next page (after=)
    total_exact: bool = True

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> CounterPage:
        return cls(
            counters=tuple(ManagedCounter.from_data(c) for c in data.get("counters", ())),
            total=int(data.get("total", 0)),
            limit=int(data.get("limit", 0)),
            offset=int(data.get("offset", 0)),
            next=data.get("next"),
            total_exact=bool(data.get("total_exact", True)),
        )


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token of a workspace; `secret` only in the answer that created it."""

    id: int
    name: str
    prefix: str
    permission: str  # "read", "write" or "admin"
    created_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    secret: str | None
    raw: Mapping[str, Any]

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> TokenInfo:
        secret = data.get("token")
        return cls(
            id=int(data["id"]),
            name=str(data.get("name") or ""),
            prefix=str(data.get("prefix") or ""),
            permission=str(data.get("permission") or ""),
            created_at=_time(data.get("created_at")),
            expires_at=_time(data.get("expires_at")),
            last_used_at=_time(data.get("last_used_at")),
            revoked_at=_time(data.get("revoked_at")),
            secret=secret if isinstance(secret, str) else None,
            raw=data,
        )

    @staticmethod
    def list_from_data(data: Mapping[str, Any]) -> list[TokenInfo]:
        return [TokenInfo.from_data(t) for t in data.get("tokens", ())]


@dataclass(frozen=True, slots=True)
class WorkspaceSettings:
    """A workspace's settings: its V1 flag, allowed origins and page counting."""

    id: int
    slug: str
    name: str
    v1_open: bool
    allowed_origins: tuple[str, ...]
    created_at: datetime | None
    raw: Mapping[str, Any]
    page_views: bool = False
    honour_dnt: bool = False

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> WorkspaceSettings:
        return cls(
            id=int(data["id"]),
            slug=str(data["slug"]),
            name=str(data.get("name") or ""),
            v1_open=bool(data.get("v1_open", False)),
            allowed_origins=tuple(data.get("allowed_origins") or ()),
            created_at=_time(data.get("created_at")),
            raw=data,
            page_views=bool(data.get("page_views", False)),
            honour_dnt=bool(data.get("honour_dnt", False)),
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
    kind = ERRORS.get(response.status_code, ApiError)
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
