"""The Store protocol: everything Tally keeps, behind one small async interface.

Each backend wraps its driver's errors into `tally.errors.StorageError`. Counts change
only through `apply`, which takes deltas, never absolute values (except a reset), and
records the batch's `seq` for this store's node in the same transaction, so a reader can
tell which of the node's batches a snapshot already contains.
"""

from __future__ import annotations

from typing import Protocol

from tally.models import (
    BatchChanges,
    Counter,
    CounterRecord,
    History,
    Permission,
    Token,
    Totals,
    Workspace,
)

NO_END = 2**62  # an hour index after any real one


class Store(Protocol):
    node: str
    dialect: str  # "sqlite", "postgresql": which migrations/ folder is ours
    # seconds a busy group commit lets its next batch fill (TALLY_COMMIT_LINGER=auto)
    commit_linger: float

    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    async def claim_node(self) -> None:
        """Record this store's node as a new one. Raises Conflict if a node of that name
        exists: two live nodes with one name would skip each other's batches."""

    async def register_node(self) -> int:
        """The last batch seq this store's node committed (0 if new); forgets nodes idle
        for a week."""

    async def meta_get_or_set(self, key: str, default: str) -> str:
        """The stored value of `key`; stores `default` first if there is none."""

    # workspaces
    async def create_workspace(
        self, slug: str, name: str, created_at: float | None = None
    ) -> Workspace:
        """Raises Conflict if the slug is taken. `created_at`: now unless given (an import)."""

    async def get_workspace(self, slug: str) -> Workspace | None: ...

    async def list_workspaces(self) -> list[Workspace]: ...

    # tokens
    async def create_token(
        self, workspace_id: int, name: str, prefix: str, token_hash: str, permission: Permission
    ) -> Token: ...

    async def find_token(self, token_hash: str) -> Token | None:
        """The token with this hash, revoked ones included."""

    async def list_tokens(self, workspace_id: int) -> list[Token]: ...

    async def revoke_token(self, token_id: int) -> bool:
        """False if there is no such token or it was already revoked."""

    # counters
    async def create_counter(
        self, workspace_id: int, name: str, *, private: bool = False, description: str = ""
    ) -> Counter:
        """Raises Conflict if the workspace has a counter of that name."""

    async def ensure_counter(self, workspace_id: int, name: str) -> Counter:
        """The counter, created public and empty if missing (safe under races)."""

    async def read_counter(self, workspace_slug: str, name: str) -> Counter | None:
        """The committed counter with `seq` from the same snapshot."""

    async def read_counts(self, counter_id: int) -> tuple[int, int, float, int] | None:
        """(up_count, down_count, updated_at, seq) of the counter from one snapshot."""

    async def list_counters(self, workspace_id: int) -> list[Counter]: ...

    async def count_counters(self, workspace_id: int) -> int: ...

    async def list_counters_after(
        self, workspace_id: int, after_id: int, limit: int
    ) -> list[Counter]:
        """At most `limit` counters of the workspace with id > after_id, in id order (a
        page of an export: bounded memory whatever the workspace's size)."""

    async def read_buckets(self, counter_ids: list[int]) -> list[tuple[int, int, int, int]]:
        """(counter_id, hour, up, down) of every bucket of these counters, in that order."""

    async def import_counters(self, workspace_id: int, records: list[CounterRecord]) -> list[str]:
        """Set each counter of `records` to the record's values, in one transaction:
        created if missing; totals, settings and times replaced; the hourly history
        replaced by the record's unless its hours are None. Per record: "created",
        "changed" or "unchanged" (already equal: nothing written). Not for counters a
        server is counting at the same moment (its changes may be overwritten)."""

    async def read_history(
        self, counter_id: int, since_hour: int = 0, before_hour: int = NO_END
    ) -> History:
        """The counter's hourly buckets with since_hour <= hour < before_hour (all by
        default), with `seq` from the same snapshot."""

    async def apply(self, changes: BatchChanges) -> dict[int, Totals]:
        """Apply one batch in one transaction; the totals of every changed counter that
        still exists, as committed. A batch whose seq this node already committed is not
        applied again (a retry after a COMMIT whose answer was lost counts once).

        Raises OutcomeUnknown when the batch was sent but no answer came: it may have
        committed. Any other StorageError means it did not."""

    async def settle(self, changes: BatchChanges) -> dict[int, Totals] | None:
        """After `apply(changes)` raised OutcomeUnknown: did it commit? The totals of its
        counters now if it did. None if it did not, and then it never will: this node's
        seq is moved past the batch (a fence), so a call that reaches the database
        later changes nothing. Raises StorageError when the database cannot tell now;
        calling it again is safe."""
