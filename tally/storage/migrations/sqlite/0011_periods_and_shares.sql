-- Issue 23. 1. A workspace's own time zone (an IANA name; '' is the server's,
-- TALLY_TIMEZONE): the dates of its periods, charts and overview.
ALTER TABLE workspaces ADD COLUMN timezone TEXT NOT NULL DEFAULT '';

-- 2. The buckets of a range of hours, whatever their counter: the workspace overview's
-- totals and the counters that changed most read the buckets of its period (and the one
-- before) from here, never every counter of the workspace. A bucket's hour never
-- changes, so a count (which changes its up or down) never moves it in this index: it
-- costs only the insert of a counter's first bucket of an hour.
CREATE INDEX counter_hours_hour ON counter_hours (hour);
