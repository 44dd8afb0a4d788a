-- Issue 23, as sqlite/0011_periods_and_shares.sql. 1. A workspace's own time zone (an
-- IANA name; '' is the server's, TALLY_TIMEZONE).
ALTER TABLE workspaces ADD COLUMN timezone TEXT NOT NULL DEFAULT '';

-- 2. The buckets of a range of hours, whatever their counter (the overview's totals and
-- the counters that changed most). `hour` never changes, so a count's update of `up` or
-- `down` stays a HOT update: the index costs only the insert of a new bucket.
CREATE INDEX counter_hours_hour ON counter_hours (hour);

-- 3. Shares (as sqlite/0011): a counter's page or the overview (counter_id NULL),
-- read-only, by a secret link (its SHA-256 kept) or publicly.
CREATE TABLE shares (
    id               BIGSERIAL PRIMARY KEY,
    workspace_id     BIGINT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    counter_id       BIGINT REFERENCES counters(id) ON DELETE CASCADE,
    public           BOOLEAN NOT NULL DEFAULT FALSE,
    secret_hash      TEXT UNIQUE,
    prefix           TEXT NOT NULL DEFAULT '',
    name             TEXT NOT NULL DEFAULT '',
    include_private  TEXT NOT NULL DEFAULT '',
    created_by       BIGINT,
    created_at       DOUBLE PRECISION NOT NULL,
    expires_at       DOUBLE PRECISION,
    revoked_at       DOUBLE PRECISION
);
CREATE INDEX shares_workspace ON shares (workspace_id, counter_id);
