-- Issue 23, as sqlite/0011_periods_and_shares.sql. 1. A workspace's own time zone (an
-- IANA name; '' is the server's, TALLY_TIMEZONE).
ALTER TABLE workspaces ADD COLUMN timezone TEXT NOT NULL DEFAULT '';

-- 2. The buckets of a range of hours, whatever their counter (the overview's totals and
-- the counters that changed most). `hour` never changes, so a count's update of `up` or
-- `down` stays a HOT update: the index costs only the insert of a new bucket.
CREATE INDEX counter_hours_hour ON counter_hours (hour);
