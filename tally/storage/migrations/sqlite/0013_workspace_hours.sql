-- A workspace's hourly totals: for each (workspace, hour), the sum of its counters'
-- buckets (counter_hours) of that hour. The overview's totals and chart read these rows
-- (a month: 720 of them) instead of summing every bucket of the period (tens of
-- thousands in a big workspace). Kept in the transaction that changes the buckets, by
-- every path that does: a batch (SQLiteStore.apply: one upsert per workspace and hour
-- of the batch, not per count), a set or reset (_apply_special), an import, a counter's
-- delete (its buckets subtracted), a workspace's delete (ON DELETE CASCADE).
-- A row may hold (0, 0) once its buckets are gone: a zero row counts as no row.
CREATE TABLE workspace_hours (
    workspace_id  INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    hour          INTEGER NOT NULL,
    up            INTEGER NOT NULL DEFAULT 0,
    down          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, hour)
) WITHOUT ROWID;

INSERT INTO workspace_hours (workspace_id, hour, up, down)
SELECT c.workspace_id, h.hour, SUM(h.up), SUM(h.down)
FROM counter_hours h JOIN counters c ON c.id = h.counter_id
GROUP BY c.workspace_id, h.hour;
