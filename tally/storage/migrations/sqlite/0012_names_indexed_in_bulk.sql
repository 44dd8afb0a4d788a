-- Issue 21, new counters: the search index of names (0008's FTS5 `counter_names`) is
-- written in bulk, not by a trigger per created counter. FTS5 writes a segment with
-- every transaction that touches it and merges them as they pile up: 6,400 names took
-- 310 to 530 ms in creation batches of 64, 13 to 17 ms in one statement
-- (docs/performance.md). `upto`: every counter with an id up to it is indexed (ids are
-- AUTOINCREMENT, never reused); the ones after it are the tail, indexed a moment later
-- (tally/storage/sqlite.py, `_index_names`), and a search reads them by LIKE meanwhile.
CREATE TABLE names_indexed (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    upto  INTEGER NOT NULL
);
INSERT INTO names_indexed (id, upto) SELECT 1, COALESCE(MAX(id), 0) FROM counters;
DROP TRIGGER counter_names_add;
DROP TRIGGER counter_names_drop;
DROP TRIGGER counter_names_rename;
-- only rows in the index: FTS5's 'delete' of a row it never indexed corrupts it
CREATE TRIGGER counter_names_drop AFTER DELETE ON counters
WHEN OLD.id <= (SELECT upto FROM names_indexed) BEGIN
    INSERT INTO counter_names (counter_names, rowid, name) VALUES ('delete', OLD.id, OLD.name);
END;
CREATE TRIGGER counter_names_rename AFTER UPDATE OF name ON counters
WHEN OLD.id <= (SELECT upto FROM names_indexed) BEGIN
    INSERT INTO counter_names (counter_names, rowid, name) VALUES ('delete', OLD.id, OLD.name);
    INSERT INTO counter_names (rowid, name) VALUES (NEW.id, NEW.name);
END;
