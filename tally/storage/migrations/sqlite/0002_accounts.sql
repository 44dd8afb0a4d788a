-- Accounts and the dashboard: people, their browser sessions, single-use links, and
-- who is a member of which workspace. Secrets (session ids, link tokens) are stored as
-- SHA-256 hashes only. Roles are 1 viewer, 2 editor, 3 owner (tally.models.Role).
CREATE TABLE accounts (
    id             INTEGER PRIMARY KEY,
    email          TEXT NOT NULL,
    email_key      TEXT NOT NULL UNIQUE,  -- lower-cased: unique case-insensitively
    password_hash  TEXT NOT NULL,         -- argon2id
    verified_at    REAL,
    created_at     REAL NOT NULL
);

CREATE TABLE sessions (
    hash        TEXT PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
);
CREATE INDEX sessions_account ON sessions (account_id);

-- email verification, password reset and workspace invitations
CREATE TABLE one_time_tokens (
    id            INTEGER PRIMARY KEY,
    hash          TEXT NOT NULL UNIQUE,
    purpose       TEXT NOT NULL,
    account_id    INTEGER REFERENCES accounts(id) ON DELETE CASCADE,
    workspace_id  INTEGER REFERENCES workspaces(id) ON DELETE CASCADE,
    email         TEXT NOT NULL DEFAULT '',
    role          INTEGER,
    created_at    REAL NOT NULL,
    expires_at    REAL NOT NULL,
    used_at       REAL
);
CREATE INDEX one_time_tokens_workspace ON one_time_tokens (workspace_id);

CREATE TABLE members (
    workspace_id  INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    role          INTEGER NOT NULL,
    created_at    REAL NOT NULL,
    PRIMARY KEY (workspace_id, account_id)
);
CREATE INDEX members_account ON members (account_id);

-- the API's user_id: the first owner's account id
ALTER TABLE workspaces ADD COLUMN owner_id INTEGER;
ALTER TABLE tokens ADD COLUMN expires_at REAL;
ALTER TABLE tokens ADD COLUMN last_used_at REAL;
-- Counters can now be deleted: their ids must never be reused (SQLite reuses the
-- largest rowid after its row is deleted), or a count in flight for a deleted counter
-- could land on a new one. AUTOINCREMENT needs the table rebuilt; nothing references
-- counters by foreign key, and counter_hours keeps its counter_id values.
CREATE TABLE counters_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO counters_new (id, workspace_id, name, description, private, up_count,
    down_count, created_at, updated_at)
SELECT id, workspace_id, name, description, private, up_count, down_count, created_at,
    updated_at FROM counters;
DROP TABLE counters;
ALTER TABLE counters_new RENAME TO counters;
-- the dashboard's counter list, sorted by last update
CREATE INDEX counters_workspace_updated ON counters (workspace_id, updated_at);
