"""Shares: a counter's page or the workspace overview, read-only, for people without an
account. A secret link (`/s/SECRET`, only the secret's SHA-256 is stored, revocable,
optionally expiring) or public (`/p/SLUG` for the overview, `/p/SLUG/c/ID` for a
counter; one per page: a new one replaces the old). A shared overview shows the
workspace's public counters and the private ones the owner picked; a shared counter
page, that counter (private or not: the owner chose it). Made by owners, on the
dashboard or with an Admin token (`/v2/{ws}/-/shares`); the same checks here for both.
"""

from __future__ import annotations

import time

from tally.errors import BadRequest, Gone, NotFound
from tally.links import new_secret, secret_hash
from tally.models import Share
from tally.storage.base import Store

MAX_NAME = 100
MAX_DAYS = 3650
MAX_INCLUDED = 100  # private counters picked for one shared overview
PREFIX = 6  # characters of a secret kept to tell links apart


def check_name(name: str) -> str:
    name = name.strip()
    if len(name) > MAX_NAME:
        raise BadRequest(f"the share's name is longer than {MAX_NAME} characters")
    return name


def check_days(days: object) -> int | None:
    """`expires_in_days`: None, or a whole number of days from 1 to MAX_DAYS."""
    if days is None:
        return None
    if type(days) is float and days.is_integer():
        days = int(days)
    if type(days) is not int or not 1 <= days <= MAX_DAYS:
        raise BadRequest(f"expires_in_days must be a whole number from 1 to {MAX_DAYS}")
    return days


async def create(
    store: Store,
    workspace_id: int,
    counter_id: int | None,
    *,
    public: bool,
    name: str = "",
    days: int | None = None,
    include: tuple[int, ...] = (),
    created_by: int | None = None,
) -> tuple[Share, str | None]:
    """A new share and its secret (None for a public one; shown once, never stored).
    The counter and the picked private counters must be the workspace's."""
    now = time.time()
    if counter_id is not None:
        counter = await store.get_counter_by_id(counter_id)
        if counter is None or counter.workspace_id != workspace_id:
            raise NotFound("no such counter in this workspace")
        include = ()
    if len(include) > MAX_INCLUDED:
        raise BadRequest(f"pick at most {MAX_INCLUDED} private counters for one share")
    for picked in set(include):
        counter = await store.get_counter_by_id(picked)
        if counter is None or counter.workspace_id != workspace_id:
            raise BadRequest(f"counter {picked} is no counter of this workspace")
    secret = None if public else new_secret()
    share = await store.create_share(
        workspace_id,
        counter_id,
        public=public,
        secret_hash=None if secret is None else secret_hash(secret),
        prefix="" if secret is None else secret[:PREFIX],
        name=check_name(name),
        include_private=tuple(sorted(set(include))),
        created_by=created_by,
        now=now,
        expires_at=None if days is None else now + days * 86400,
    )
    return share, secret


def path(share: Share, secret: str | None = None) -> str | None:
    """The share's path; a secret link's only with its secret (None without)."""
    if share.public:
        base = f"/p/{share.workspace_slug}"
        return base if share.counter_id is None else f"{base}/c/{share.counter_id}"
    return None if secret is None else f"/s/{secret}"


def usable(share: Share | None, now: float) -> Share:
    """The share, if it may be seen now: NotFound if there is none, Gone (410) once it
    is revoked or expired."""
    if share is None:
        raise NotFound("No such shared page.")
    if share.revoked_at is not None:
        raise Gone("This shared page was revoked by its owner.")
    if share.expires_at is not None and share.expires_at <= now:
        raise Gone("This shared page has expired.")
    return share
