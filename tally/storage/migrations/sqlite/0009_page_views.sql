-- Issue 24 part 1: page views for static sites (tally/pageviews.py). page_views: the
-- workspace opts in to page counting, so an anonymous up from one of its allowed origins
-- may create a counter (within its quota and creation budget); honour_dnt: a page view
-- sent with Do-Not-Track or Global Privacy Control is not counted.
ALTER TABLE workspaces ADD COLUMN page_views INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workspaces ADD COLUMN honour_dnt INTEGER NOT NULL DEFAULT 0;
