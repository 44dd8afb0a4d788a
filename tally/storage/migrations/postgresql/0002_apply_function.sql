-- One group-commit batch in one call: one statement, one round trip, no BEGIN/COMMIT
-- around it (see PostgresStore.apply). Applies nothing if this node already committed
-- p_seq (a retry after a COMMIT whose answer was lost), and returns the totals.
CREATE FUNCTION tally_apply(
    p_node TEXT, p_seq BIGINT, p_now DOUBLE PRECISION,
    p_ids BIGINT[], p_up BIGINT[], p_down BIGINT[], p_reset BOOLEAN[],
    p_at DOUBLE PRECISION[],
    p_h_ids BIGINT[], p_h_hours BIGINT[], p_h_up BIGINT[], p_h_down BIGINT[]
) RETURNS TABLE (r_id BIGINT, r_up BIGINT, r_down BIGINT, r_at DOUBLE PRECISION)
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM node_seq s WHERE s.node = p_node AND s.seq >= p_seq) THEN
        RETURN QUERY SELECT c.id, c.up_count, c.down_count, c.updated_at
            FROM counters c WHERE c.id = ANY(p_ids);
        RETURN;
    END IF;
    -- Hours first, in (counter_id, hour) order, then counters in id order (`locked`
    -- takes every row lock, sorted, before the UPDATE touches a row; MATERIALIZED keeps
    -- the planner from folding it away): every node takes its row locks in one order,
    -- so two nodes changing overlapping counters never deadlock.
    INSERT INTO counter_hours AS h (counter_id, hour, up, down)
    SELECT * FROM unnest(p_h_ids, p_h_hours, p_h_up, p_h_down) AS v(counter_id, hour, up, down)
    ORDER BY 1, 2
    ON CONFLICT (counter_id, hour)
    DO UPDATE SET up = h.up + excluded.up, down = h.down + excluded.down;
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
    INSERT INTO node_seq AS s (node, seq, updated_at) VALUES (p_node, p_seq, p_now)
    ON CONFLICT (node)
    DO UPDATE SET seq = GREATEST(s.seq, excluded.seq), updated_at = excluded.updated_at;
END
$$;
