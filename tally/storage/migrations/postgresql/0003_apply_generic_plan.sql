-- tally_apply's statements take arrays, so PostgreSQL's plan cache kept choosing a
-- custom plan per call: a third of the server's CPU per group commit went to planning
-- the same three statements again. Their generic plans (index lookups by id) are the
-- right ones for every batch.
ALTER FUNCTION tally_apply(
    TEXT, BIGINT, DOUBLE PRECISION, BIGINT[], BIGINT[], BIGINT[], BOOLEAN[],
    DOUBLE PRECISION[], BIGINT[], BIGINT[], BIGINT[], BIGINT[]
) SET plan_cache_mode = force_generic_plan;
