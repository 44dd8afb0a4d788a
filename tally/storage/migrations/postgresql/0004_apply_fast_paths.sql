-- tally_apply, cheaper per call (about a quarter less server CPU per group commit):
-- - this node's seq is checked and moved in one UPDATE (a seq already recorded means a
--   retry of a batch that committed: answer with the totals, change nothing);
-- - a batch of one counter and one hour (a hot counter, the common case) writes them
--   with single-row statements instead of the set-based ones, whose hash join and
--   unnest cost more to start than to run.
-- Row locks are still taken hours first, then counters, each in id order, so nodes
-- changing overlapping counters never deadlock. Generic plans as in 0003.
CREATE OR REPLACE FUNCTION tally_apply(
    p_node TEXT, p_seq BIGINT, p_now DOUBLE PRECISION,
    p_ids BIGINT[], p_up BIGINT[], p_down BIGINT[], p_reset BOOLEAN[],
    p_at DOUBLE PRECISION[],
    p_h_ids BIGINT[], p_h_hours BIGINT[], p_h_up BIGINT[], p_h_down BIGINT[]
) RETURNS TABLE (r_id BIGINT, r_up BIGINT, r_down BIGINT, r_at DOUBLE PRECISION)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    -- the node's row first: it is this node's alone, so it adds no lock order to keep
    UPDATE node_seq s SET seq = p_seq, updated_at = p_now
    WHERE s.node = p_node AND s.seq < p_seq;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM node_seq s WHERE s.node = p_node) THEN
            RETURN QUERY SELECT c.id, c.up_count, c.down_count, c.updated_at
                FROM counters c WHERE c.id = ANY(p_ids);
            RETURN;
        END IF;
        INSERT INTO node_seq (node, seq, updated_at) VALUES (p_node, p_seq, p_now);
    END IF;
    IF cardinality(p_h_ids) = 1 THEN
        INSERT INTO counter_hours AS h (counter_id, hour, up, down)
        VALUES (p_h_ids[1], p_h_hours[1], p_h_up[1], p_h_down[1])
        ON CONFLICT (counter_id, hour)
        DO UPDATE SET up = h.up + excluded.up, down = h.down + excluded.down;
    ELSE
        -- in (counter_id, hour) order: see 0002
        INSERT INTO counter_hours AS h (counter_id, hour, up, down)
        SELECT * FROM unnest(p_h_ids, p_h_hours, p_h_up, p_h_down) AS v(counter_id, hour, up, down)
        ORDER BY 1, 2
        ON CONFLICT (counter_id, hour)
        DO UPDATE SET up = h.up + excluded.up, down = h.down + excluded.down;
    END IF;
    IF cardinality(p_ids) = 1 THEN
        RETURN QUERY
        UPDATE counters c
        SET up_count = CASE WHEN p_reset[1] THEN 0 ELSE c.up_count END + p_up[1],
            down_count = CASE WHEN p_reset[1] THEN 0 ELSE c.down_count END + p_down[1],
            updated_at = GREATEST(c.updated_at, p_at[1])
        WHERE c.id = p_ids[1]
        RETURNING c.id, c.up_count, c.down_count, c.updated_at;
        RETURN;
    END IF;
    -- every row lock first, in id order, then the update: see 0002
    RETURN QUERY
    WITH v AS (
        SELECT * FROM unnest(p_ids, p_up, p_down, p_reset, p_at) AS v(id, up, down, reset, at)
    ), locked AS MATERIALIZED (
        SELECT c.id FROM counters c WHERE c.id = ANY(p_ids) ORDER BY c.id FOR UPDATE
    )
    UPDATE counters c
    SET up_count = CASE WHEN v.reset THEN 0 ELSE c.up_count END + v.up,
        down_count = CASE WHEN v.reset THEN 0 ELSE c.down_count END + v.down,
        updated_at = GREATEST(c.updated_at, v.at)
    FROM v JOIN locked l ON l.id = v.id
    WHERE c.id = v.id
    RETURNING c.id, c.up_count, c.down_count, c.updated_at;
END
$$;
