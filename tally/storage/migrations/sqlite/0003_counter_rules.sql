-- Issue 12: rules a workspace or counter may set.
-- workspaces.v1_open: the workspace answers the V1 legacy endpoints as a namespace.
-- origins (both tables): web origins allowed to count anonymously, one per line; empty:
-- any. A counter's own list, if it has one, replaces its workspace's.
-- counters.min_value / max_value: the floor and ceiling of up_count - down_count
-- (NULL: none).
ALTER TABLE workspaces ADD COLUMN v1_open INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workspaces ADD COLUMN origins TEXT NOT NULL DEFAULT '';
ALTER TABLE counters ADD COLUMN min_value INTEGER;
ALTER TABLE counters ADD COLUMN max_value INTEGER;
ALTER TABLE counters ADD COLUMN origins TEXT NOT NULL DEFAULT '';
-- node_seq.refused: the counters (a JSON array) whose checked change was refused in the
-- node's batch refused_seq, so a retry of that batch answers each change as decided.
ALTER TABLE node_seq ADD COLUMN refused_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE node_seq ADD COLUMN refused TEXT NOT NULL DEFAULT '[]';
