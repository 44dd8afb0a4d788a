"""Plain records passed between the store, the domain code and the web layer."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Permission(enum.IntEnum):
    """Ordered: each permission includes the ones below it."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Permission:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown permission {text!r}: use read, write or admin") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Workspace:
    id: int
    slug: str
    name: str
    created_at: float
    v1_open: bool = False  # answers the V1 legacy endpoints as a namespace
    origins: tuple[str, ...] = ()  # allowed origins of anonymous counts (tally.origins)
    # page counting (tally.pageviews): anonymous ups from its origins may create counters
    page_views: bool = False
    honour_dnt: bool = False  # page views with Do-Not-Track / Global Privacy Control: not counted
    timezone: str = ""  # an IANA zone name for its dates (tally.periods); "": the server's


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    workspace_id: int
    workspace_slug: str
    name: str
    prefix: str
    permission: Permission
    created_at: float
    revoked_at: float | None
    expires_at: float | None = None
    last_used_at: float | None = None
    created_by: int | None = None  # the account that made it on the dashboard

    def usable(self, now: float) -> bool:
        """Not revoked, and not expired at unix time `now`."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class Counter:
    """A counter as committed in the store, plus `seq`: the last group-commit batch of
    this node that the same snapshot already contains (see `tally.writes`)."""

    id: int
    workspace_id: int
    workspace_slug: str
    name: str
    description: str
    private: bool
    up_count: int
    down_count: int
    created_at: float
    updated_at: float
    seq: int = 0
    owner_id: int = 0  # the account id of the workspace's first owner (0: none)
    floor: int | None = None  # the lowest value (up_count - down_count) a down may reach
    ceiling: int | None = None  # the highest value an up may reach
    origins: tuple[str, ...] = ()  # its own allowed origins; () falls back to the workspace's
    workspace_origins: tuple[str, ...] = ()
    v1_open: bool = False  # its workspace's V1 flag
    # seconds within which an anonymous up of one visitor counts once; 0: off
    # (tally.visitors)
    unique_window: int = 0
    # a visitor is its address alone, not its address and User-Agent (tally.visitors)
    unique_by_address: bool = False
    workspace_timezone: str = ""  # its workspace's time zone ("": the server's)

    @property
    def bounded(self) -> bool:
        return self.floor is not None or self.ceiling is not None

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        """The origins anonymous counts must come from (empty: any)."""
        return self.origins or self.workspace_origins


@dataclass(frozen=True, slots=True)
class CounterChange:
    """New settings of one counter, saved together in one transaction
    (Store.change_counter); a field left None keeps what is stored."""

    description: str | None = None
    private: bool | None = None
    bounds: tuple[int | None, int | None] | None = None  # (floor, ceiling), None: no bound
    origins: tuple[str, ...] | None = None  # its own allowed origins, (): the workspace's
    unique_window: int | None = None  # seconds, 0: off
    unique_by_address: bool | None = None


@dataclass(frozen=True, slots=True)
class History:
    """Hourly buckets (utc_hour, up, down) of one counter, with the snapshot's `seq`."""

    buckets: list[tuple[int, int, int]]
    seq: int


@dataclass(slots=True)  # one per request: not frozen, whose __init__ is 4x slower
class Totals:
    """A counter's running totals right after a committed batch."""

    up_count: int
    down_count: int
    updated_at: float
    refused: bool = False  # a checked change that would have crossed a bound: not applied
    # a set's batch: the totals the set replaced (so its history adjustment is known)
    replaced: tuple[int, int] | None = None


# CounterDelta.check
UNCHECKED = 0
CHECK_BOUNDS = 1  # within the counter's floor and ceiling
CHECK_BOUNDS_AND_ZERO = 2  # also never below 0 (the V1 down)


@dataclass(slots=True)
class CounterDelta:
    """What one group-commit batch does to one counter: optionally start the totals from
    (`base_up`, `base_down`) instead of their committed values (`reset`: a reset is a
    base of 0, 0), then add `up` and `down`.

    `record`: the hour (>= 0) in whose bucket a set records its difference to the totals
    it replaced, so the buckets sum to the totals (docs/api.md, "set"); -1 for none.
    `check`: apply only if the change crosses none of the counter's bounds as stored at
    commit time (a refused change writes nothing); a checked delta is the only change
    to its counter in its batch (see GroupCommit)."""

    up: int = 0
    down: int = 0
    reset: bool = False
    updated_at: float = 0.0
    base_up: int = 0
    base_down: int = 0
    check: int = UNCHECKED
    record: int = -1

    def totals_after(self, up_count: int, down_count: int) -> tuple[int, int]:
        """The totals this delta makes of committed ones."""
        if self.reset:
            up_count, down_count = self.base_up, self.base_down
        return up_count + self.up, down_count + self.down

    def crosses(
        self, up_count: int, down_count: int, floor: int | None, ceiling: int | None
    ) -> bool:
        """Would this checked delta, applied to these totals, cross a bound? (The same rule
        as `tally_apply_ops` in migrations/postgresql/0006_counter_rules.sql.)"""
        if self.check == UNCHECKED:
            return False
        new_up, new_down = self.totals_after(up_count, down_count)
        value = new_up - new_down
        if self.check == CHECK_BOUNDS_AND_ZERO:
            floor = max(floor if floor is not None else 0, 0)
        if ceiling is not None and value > ceiling and (self.up > 0 or self.reset):
            return True
        return floor is not None and value < floor and (self.down > 0 or self.reset)

    @property
    def plain(self) -> bool:
        """Neither checked nor a recorded set: `tally_apply`'s fast paths can take it."""
        return self.check == UNCHECKED and self.record < 0


@dataclass(slots=True)
class BatchChanges:
    """Everything one group-commit transaction applies, tagged with this node's `seq`."""

    seq: int
    counters: dict[int, CounterDelta]
    # (counter_id, utc_hour) -> [up, down] events in that hour
    hours: dict[tuple[int, int], list[int]]


@dataclass(frozen=True, slots=True)
class CounterRecord:
    """A counter as an export file carries it: by name, with its totals, settings, rules
    (unless None) and (unless None: a file of totals only) its whole hourly history,
    (hour, up, down) in order of hour."""

    name: str
    description: str
    private: bool
    up_count: int
    down_count: int
    created_at: float
    updated_at: float
    hours: tuple[tuple[int, int, int], ...] | None
    rules: CounterRules | None = None  # None: the file has none (format 1), keep the counter's
    # the unique-visitor window in seconds (0: off); None: the file has none, keep the counter's
    unique: int | None = None
    # with `unique`: a visitor is its address alone (tally.visitors)
    unique_by_address: bool = False


@dataclass(frozen=True, slots=True)
class CounterRules:
    """A counter's bounds and own allowed origins, as a file carries them."""

    floor: int | None
    ceiling: int | None
    origins: tuple[str, ...]


class Role(enum.IntEnum):
    """A member's role in a workspace. Ordered: each role may do what the ones below may."""

    VIEWER = 1
    EDITOR = 2
    OWNER = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}: use viewer, editor or owner") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    email: str
    password_hash: str
    verified: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: the account, and when the session ends."""

    account: Account
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class OneTimeToken:
    """A single-use link: email verification, password reset or workspace invitation."""

    id: int
    purpose: str  # "verify", "reset", "invite"
    account_id: int | None
    workspace_id: int | None
    email: str
    role: Role | None
    created_at: float
    expires_at: float
    used_at: float | None = None  # used, or cancelled (an invitation nobody accepted)
    created_by: int | None = None  # an invitation's inviter


@dataclass(frozen=True, slots=True)
class Member:
    workspace_id: int
    account_id: int
    email: str
    role: Role
    created_at: float


@dataclass(frozen=True, slots=True)
class Membership:
    """A workspace as one of its members sees it."""

    workspace: Workspace
    role: Role


@dataclass(frozen=True, slots=True)
class CounterPage:
    """One page of a workspace's counters, how many match in all (`exact`: all of them
    were counted, else at least `total` match), and the cursors of the pages after it
    and before it (None: there is none; tally.storage.paging)."""

    counters: list[Counter]
    total: int
    exact: bool = True
    next: str | None = None
    previous: str | None = None


# alerts (tally/alerts.py) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where a workspace's alerts are posted, signed with `secret` ("whsec_<base64>")."""

    id: int
    workspace_id: int
    url: str
    secret: str
    description: str
    created_at: float


@dataclass(frozen=True, slots=True)
class AlertRule:
    """A rule of a workspace: of one counter, or of any (`counter_id` None). `kind`:
    above / below (`threshold`: a value), rate (events in a UTC hour), quiet (seconds
    without a change). Its firings go to the webhook or to the email address."""

    id: int
    workspace_id: int
    counter_id: int | None
    kind: str
    threshold: int
    webhook_id: int | None
    email: str | None
    created_at: float
    counter_name: str | None = None


@dataclass(frozen=True, slots=True)
class Firing:
    """One row of the alert outbox: a rule that fired for a counter, and where its
    delivery stands (`state`: 0 pending, 1 delivered, 2 given up)."""

    id: int
    event_id: str
    workspace_id: int
    workspace_slug: str
    counter_id: int
    counter_name: str
    rule_id: int | None
    kind: str
    threshold: int
    value_before: int
    value: int
    fired_at: float
    webhook_id: int | None
    email: str | None
    state: int
    attempts: int
    next_at: float
    delivered_at: float | None
    last_status: str


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One try at delivering a firing: the HTTP status (None: no answer), how long it
    took, and the start of the receiver's answer (or the error)."""

    id: int
    outbox_id: int
    attempt: int
    node: str
    started_at: float
    latency: float
    status: int | None
    error: str
    response: str


@dataclass(frozen=True, slots=True)
class Share:
    """A read-only view of a counter's page (`counter_id`) or of the workspace overview
    (None), by a secret link or, `public`, at a URL of its workspace (tally.shares)."""

    id: int
    workspace_id: int
    workspace_slug: str
    counter_id: int | None
    public: bool
    prefix: str  # a secret link's first characters, to tell links apart ("" if public)
    name: str
    include_private: tuple[int, ...]  # private counters a shared overview shows
    created_by: int | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
