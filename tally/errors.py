"""The exception hierarchy. `tally.web` maps each to its status and JSON body."""

from __future__ import annotations


class TallyError(Exception):
    """Base of every error Tally reports to a client."""

    status = 500
    default_message = "internal error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        # headers its response carries (the rate limit's, for a 429 or a refused token)
        self.headers: list[tuple[bytes, bytes]] = []


class BadRequest(TallyError):
    status = 400
    default_message = "bad request"


class Unauthorized(TallyError):
    status = 401
    default_message = "invalid or revoked token"


class Forbidden(TallyError):
    status = 403
    default_message = "the token does not have the permission for this action"


class NotFound(TallyError):
    status = 404
    default_message = "page not found. check the workspace and counter name"


class Gone(TallyError):
    status = 410
    default_message = "gone"


class MethodNotAllowed(TallyError):
    status = 405
    default_message = "method not allowed"


class Conflict(TallyError):
    status = 409
    default_message = "already exists"


class QuotaReached(TallyError):
    """The workspace has as many counters as its quota allows: no new one."""

    status = 403
    default_message = "the workspace has reached its counter quota"


class RateLimited(TallyError):
    status = 429
    default_message = "too many requests, slow down"

    def __init__(
        self, message: str | None = None, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        super().__init__(message)
        self.headers = headers or []


class Unavailable(TallyError):
    status = 503
    default_message = "the database is unavailable, try again shortly"


class StorageError(Exception):
    """A backend failed (driver error, lost connection). Wrapped by every Store."""


class OutcomeUnknown(StorageError):
    """A write was sent but its answer never came (a timeout, a lost connection): it may
    have committed or not. `Store.settle` tells which."""
