-- Issue 20 item 14: the same column as sqlite/0006_unique_by_address.sql: count unique
-- visitors by address only (not by address and User-Agent).
ALTER TABLE counters ADD COLUMN unique_by_address BOOLEAN NOT NULL DEFAULT FALSE;

-- A change of it is a change of the counter's settings: the nodes' caches must see it
-- (0008_spread_writes.sql), so the trigger's column list gains it.
DROP TRIGGER counters_settings_changed ON counters;
CREATE TRIGGER counters_settings_changed
AFTER INSERT OR DELETE OR UPDATE OF
    workspace_id, name, description, private, created_at, min_value, max_value, origins,
    unique_window, unique_by_address
ON counters FOR EACH STATEMENT EXECUTE FUNCTION tally_settings_changed();
