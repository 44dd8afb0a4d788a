-- Issue 23. 1. A workspace's own time zone (an IANA name; '' is the server's,
-- TALLY_TIMEZONE): the dates of its periods, charts and overview.
ALTER TABLE workspaces ADD COLUMN timezone TEXT NOT NULL DEFAULT '';

-- 2. The buckets of a range of hours, whatever their counter: the workspace overview's
-- totals and the counters that changed most read the buckets of its period (and the one
-- before) from here, never every counter of the workspace. A bucket's hour never
-- changes, so a count (which changes its up or down) never moves it in this index: it
-- costs only the insert of a counter's first bucket of an hour.
CREATE INDEX counter_hours_hour ON counter_hours (hour);

-- 3. Shares: a counter's page (counter_id) or the workspace overview (NULL), read-only,
-- by a secret link (only its SHA-256 is kept) or publicly (public = 1, at /p/SLUG or
-- /p/SLUG/c/ID: no secret). `include_private`: the ids of the private counters a shared
-- overview shows, one a line (it shows only public ones otherwise).
CREATE TABLE shares (
    id               INTEGER PRIMARY KEY,
    workspace_id     INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    counter_id       INTEGER REFERENCES counters(id) ON DELETE CASCADE,
    public           INTEGER NOT NULL DEFAULT 0,
    secret_hash      TEXT UNIQUE,
    prefix           TEXT NOT NULL DEFAULT '',
    name             TEXT NOT NULL DEFAULT '',
    include_private  TEXT NOT NULL DEFAULT '',
    created_by       INTEGER,
    created_at       REAL NOT NULL,
    expires_at       REAL,
    revoked_at       REAL
);
CREATE INDEX shares_workspace ON shares (workspace_id, counter_id);
