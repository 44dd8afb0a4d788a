-- Issue 21, as sqlite/0008_counter_lists.sql. 1. The name's sort reads the unique
-- index, now in code-point order (the list sorts by COLLATE "C", whatever the
-- database's; equal names are equal in any deterministic collation, so it refuses what
-- the old one refused, and ON CONFLICT (workspace_id, name) finds it). The other sorts
-- (up, down, last update) have no index on purpose: an index on a column that every
-- count changes makes every count a non-HOT update again, the price 0008 saved
-- (docs/performance.md); their pages are sorted from the workspace's rows.
CREATE UNIQUE INDEX counters_workspace_name ON counters (workspace_id, name COLLATE "C");
ALTER TABLE counters DROP CONSTRAINT IF EXISTS counters_workspace_id_name_key;

-- 2. How many counters each workspace has, kept by triggers on the creation and
-- deletion of counters (never on a count): the list's total, and the quota's count.
-- The row's lock orders two nodes creating counters in one workspace, so the count a
-- transaction reads after its insert is exact (tally/storage/dashboard.py, QUOTA).
CREATE TABLE workspace_counts (
    workspace_id  BIGINT PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    counters      BIGINT NOT NULL DEFAULT 0
);
INSERT INTO workspace_counts (workspace_id, counters)
SELECT w.id, (SELECT count(*) FROM counters c WHERE c.workspace_id = w.id) FROM workspaces w;

CREATE FUNCTION tally_workspace_counts_new() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO workspace_counts (workspace_id, counters) VALUES (NEW.id, 0);
    RETURN NULL;
END
$$;
CREATE TRIGGER workspace_counts_new AFTER INSERT ON workspaces
FOR EACH ROW EXECUTE FUNCTION tally_workspace_counts_new();

-- per statement, with transition tables: an import of 10,000 counters updates the row once
CREATE FUNCTION tally_counters_counted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE workspace_counts k SET counters = k.counters + n.added
        FROM (SELECT workspace_id, count(*) AS added FROM new_rows GROUP BY workspace_id) n
        WHERE k.workspace_id = n.workspace_id;
    ELSE
        UPDATE workspace_counts k SET counters = k.counters - o.removed
        FROM (SELECT workspace_id, count(*) AS removed FROM old_rows GROUP BY workspace_id) o
        WHERE k.workspace_id = o.workspace_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER counters_counted AFTER INSERT ON counters
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION tally_counters_counted();
CREATE TRIGGER counters_uncounted AFTER DELETE ON counters
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION tally_counters_counted();

-- 3. A workspace's own counter quota; NULL: the server's (TALLY_COUNTER_QUOTA).
ALTER TABLE workspaces ADD COLUMN counter_quota BIGINT;

-- 4. Search by any part of a name: a trigram index (pg_trgm) of the names, on a table of
-- their own kept by triggers on creation, deletion and renaming, so a count (an update of
-- counters) never writes to it. A search of 3 characters or more asks it for the
-- matching ids; a shorter one reads the list's index and filters. Without pg_trgm (not
-- installed, or no right to create it) the index is left out and every search filters.
CREATE TABLE counter_names (
    id            BIGINT PRIMARY KEY REFERENCES counters(id) ON DELETE CASCADE,
    workspace_id  BIGINT NOT NULL,
    name          TEXT NOT NULL
);
INSERT INTO counter_names (id, workspace_id, name) SELECT id, workspace_id, name FROM counters;

-- per statement on insert (an import of 10,000 counters: one INSERT here), per row on
-- the rare rename
CREATE FUNCTION tally_counter_names() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO counter_names (id, workspace_id, name)
        SELECT id, workspace_id, name FROM new_rows;
    ELSE
        UPDATE counter_names SET workspace_id = NEW.workspace_id, name = NEW.name
        WHERE id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER counter_names_add AFTER INSERT ON counters
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION tally_counter_names();
CREATE TRIGGER counter_names_rename AFTER UPDATE OF name, workspace_id ON counters
FOR EACH ROW EXECUTE FUNCTION tally_counter_names();

-- pg_trgm in the schema it is in (or, new, in public), its operator class named by
-- that schema: the index works whatever the search_path of a later session
DO $$
DECLARE
    trgm TEXT;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE EXTENSION pg_trgm SCHEMA public;
    END IF;
    SELECT n.nspname INTO trgm FROM pg_extension e
    JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm';
    EXECUTE format(
        'CREATE INDEX counter_names_trgm ON counter_names USING gin (name %I.gin_trgm_ops)',
        trgm
    );
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm unavailable (%): counter searches read the list', SQLERRM;
END
$$;
