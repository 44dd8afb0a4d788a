-- Issue 21: a workspace of a million counters. 1. An index for every sort of the
-- counter list, so that any page of it reads one page of an index (keyset paging, see
-- tally/storage/paging.py); each index holds the rowid (the counter's id) after its
-- column, which breaks ties. The name's is the UNIQUE (workspace_id, name) one.
-- What they cost: a count moves its counter in the up (or down) and updated indexes,
-- the write that 0005 saved for the updated one (see docs/performance.md).
CREATE INDEX counters_workspace_up ON counters (workspace_id, up_count);
CREATE INDEX counters_workspace_down ON counters (workspace_id, down_count);
CREATE INDEX counters_workspace_updated ON counters (workspace_id, updated_at);

-- 2. How many counters each workspace has, kept by triggers: the list's total without
-- counting a million rows, and the counter quota's count (checked in the transaction
-- that creates a counter: tally/storage/dashboard.py, QUOTA).
CREATE TABLE workspace_counts (
    workspace_id  INTEGER PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    counters      INTEGER NOT NULL DEFAULT 0
);
INSERT INTO workspace_counts (workspace_id, counters)
SELECT w.id, (SELECT count(*) FROM counters c WHERE c.workspace_id = w.id) FROM workspaces w;
CREATE TRIGGER workspace_counts_new AFTER INSERT ON workspaces BEGIN
    INSERT INTO workspace_counts (workspace_id, counters) VALUES (NEW.id, 0);
END;
CREATE TRIGGER counters_counted AFTER INSERT ON counters BEGIN
    UPDATE workspace_counts SET counters = counters + 1 WHERE workspace_id = NEW.workspace_id;
END;
CREATE TRIGGER counters_uncounted AFTER DELETE ON counters BEGIN
    UPDATE workspace_counts SET counters = counters - 1 WHERE workspace_id = OLD.workspace_id;
END;

-- 3. A workspace's own counter quota; NULL: the server's (TALLY_COUNTER_QUOTA).
ALTER TABLE workspaces ADD COLUMN counter_quota INTEGER;

-- 4. Search by any part of a name: an FTS5 index of the names' trigrams (any case),
-- external content (the names stay in counters), kept by triggers on creation and
-- deletion, never on a count. A search of 3 characters or more asks it for the
-- matching ids; a shorter one reads the list's index and filters (tally/storage/
-- sqlite.py, SQLiteStore._search).
CREATE VIRTUAL TABLE counter_names USING fts5(
    name, content = 'counters', content_rowid = 'id', tokenize = 'trigram'
);
INSERT INTO counter_names (counter_names) VALUES ('rebuild');
CREATE TRIGGER counter_names_add AFTER INSERT ON counters BEGIN
    INSERT INTO counter_names (rowid, name) VALUES (NEW.id, NEW.name);
END;
CREATE TRIGGER counter_names_drop AFTER DELETE ON counters BEGIN
    INSERT INTO counter_names (counter_names, rowid, name) VALUES ('delete', OLD.id, OLD.name);
END;
CREATE TRIGGER counter_names_rename AFTER UPDATE OF name ON counters BEGIN
    INSERT INTO counter_names (counter_names, rowid, name) VALUES ('delete', OLD.id, OLD.name);
    INSERT INTO counter_names (rowid, name) VALUES (NEW.id, NEW.name);
END;
