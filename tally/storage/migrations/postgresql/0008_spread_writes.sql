-- Issue 10, spread writes on PostgreSQL. 1. A node's knowledge of counter settings, exact
-- from its own group commits (2. below: the updated_at index dropped).
-- `settings_epoch.epoch` moves on with every statement that changes anything a counter
-- lookup returns besides its counts: a counter created, renamed, moved or deleted, its
-- visibility, bounds, origins or unique window; a workspace created, changed or deleted.
-- The change and the new epoch commit together, so a snapshot that holds one holds the
-- other. Every group commit reads the epoch in its own statement's snapshot (see
-- PostgresStore.apply): a node whose remembered lookups were read under the epoch it
-- sees there knows they are still right, however many counters it remembers.
-- A batch of counts (tally_apply, tally_apply_ops) writes up_count, down_count and
-- updated_at only, which fire nothing: the hot path pays no trigger.
-- No row until the first change (the epoch is then 0): a migrated schema holds no data.
CREATE TABLE settings_epoch (
    id     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    epoch  BIGINT NOT NULL
);

-- search_path as the migration had it (the schema's own): a trigger also fires in a
-- session whose search_path does not name the schema (the CLI's, a psql shell's).
CREATE FUNCTION tally_settings_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO settings_epoch AS e (id, epoch) VALUES (TRUE, 1)
    ON CONFLICT (id) DO UPDATE SET epoch = e.epoch + 1;
    RETURN NULL;
END
$$;

-- Per statement, not per row: an INSERT of 10,000 counters moves the epoch once.
CREATE TRIGGER counters_settings_changed
AFTER INSERT OR DELETE OR UPDATE OF
    workspace_id, name, description, private, created_at, min_value, max_value, origins,
    unique_window
ON counters FOR EACH STATEMENT EXECUTE FUNCTION tally_settings_changed();

CREATE TRIGGER workspaces_settings_changed
AFTER INSERT OR DELETE OR UPDATE ON workspaces
FOR EACH STATEMENT EXECUTE FUNCTION tally_settings_changed();

-- 2. The (workspace_id, updated_at) index, dropped as SQLite's 0005 drops it: every count
-- changes counters.updated_at, so it made every counter update a non-HOT one, with an
-- entry inserted into each of the counters' three indexes (0 HOT updates in 62,700 of a
-- spread load). Without it, a batch of 8 spread counters costs the server about 13 %
-- less CPU and 35 % less WAL (docs/performance.md). The dashboard's list sorted by last
-- update reads the workspace's counters anyway to count them for the pager.
DROP INDEX IF EXISTS counters_workspace_updated;
