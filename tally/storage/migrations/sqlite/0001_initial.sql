-- Times are unix seconds (REAL). Hourly buckets are keyed by the UTC hour index
-- (unix seconds // 3600).
CREATE TABLE workspaces (
    id          INTEGER PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  REAL NOT NULL
);

CREATE TABLE tokens (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name          TEXT NOT NULL DEFAULT '',
    prefix        TEXT NOT NULL,
    hash          TEXT NOT NULL UNIQUE,
    permission    INTEGER NOT NULL,
    created_at    REAL NOT NULL,
    revoked_at    REAL
);
CREATE INDEX tokens_workspace ON tokens (workspace_id);

CREATE TABLE counters (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    private       INTEGER NOT NULL DEFAULT 0,
    up_count      INTEGER NOT NULL DEFAULT 0,
    down_count    INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE TABLE counter_hours (
    counter_id  INTEGER NOT NULL,
    hour        INTEGER NOT NULL,
    up          INTEGER NOT NULL DEFAULT 0,
    down        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (counter_id, hour)
) WITHOUT ROWID;

-- The last group-commit batch each serving process (node) committed.
CREATE TABLE node_seq (
    node        TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    updated_at  REAL NOT NULL
);
