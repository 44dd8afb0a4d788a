-- Issue 24 part 1: the same columns as sqlite/0009_page_views.sql (tally/pageviews.py).
-- A change of them is a change of the workspace's settings: the workspaces trigger of
-- 0008_spread_writes.sql moves the settings epoch on any UPDATE of a workspace.
ALTER TABLE workspaces ADD COLUMN page_views BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE workspaces ADD COLUMN honour_dnt BOOLEAN NOT NULL DEFAULT FALSE;
