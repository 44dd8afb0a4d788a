-- Issue 20 item 14: a counter may count unique visitors by address only (1), not by
-- address and User-Agent (0, as before): a visitor then cannot count again by changing
-- its User-Agent (tally.visitors).
ALTER TABLE counters ADD COLUMN unique_by_address INTEGER NOT NULL DEFAULT 0;
