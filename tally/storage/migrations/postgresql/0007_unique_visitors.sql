-- Issue 13 item 3: the same column as sqlite/0004_unique_visitors.sql: seconds within
-- which an anonymous up of the same visitor counts once; 0: off. The seen visitors and
-- the salts are never in the database (tally.visitors).
ALTER TABLE counters ADD COLUMN unique_window INTEGER NOT NULL DEFAULT 0;
