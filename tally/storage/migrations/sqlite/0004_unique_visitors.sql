-- Issue 13 item 3: unique visitors. counters.unique_window: seconds within which an
-- anonymous up of the same visitor counts once (3600 to 2592000); 0: off. Only the
-- setting lives here: the seen visitors (keyed hashes) and the salts stay in memory or
-- in Redis, never in the database (tally.visitors).
ALTER TABLE counters ADD COLUMN unique_window INTEGER NOT NULL DEFAULT 0;
