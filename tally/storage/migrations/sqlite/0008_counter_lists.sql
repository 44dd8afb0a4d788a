-- Issue 21: a workspace of a million counters. 1. The name's sort reads the UNIQUE
-- (workspace_id, name) index (keyset paging, see tally/storage/paging.py). The other
-- sorts (up, down, last update) have no index on purpose: a count would move its
-- counter in each of them, the write that 0005 saved (docs/performance.md); their pages
-- are sorted from the workspace's rows, on a reader thread (never the event loop).

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
