-- Issue 12: the same columns as sqlite/0002_counter_rules.sql, and `tally_apply_ops`,
-- the group commit of a batch that holds a checked change (a counter with a floor or a
-- ceiling) or a set. Batches without one still go through `tally_apply` (0004), whose
-- fast paths stay as they are.
ALTER TABLE workspaces ADD COLUMN v1_open BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE workspaces ADD COLUMN origins TEXT NOT NULL DEFAULT '';
ALTER TABLE counters ADD COLUMN min_value BIGINT;
ALTER TABLE counters ADD COLUMN max_value BIGINT;
ALTER TABLE counters ADD COLUMN origins TEXT NOT NULL DEFAULT '';
-- The counters whose checked change tally_apply_ops refused in the node's batch
-- refused_seq, so a retry of that batch (after a COMMIT whose answer was lost) still
-- answers each change as it was decided.
ALTER TABLE node_seq ADD COLUMN refused_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE node_seq ADD COLUMN refused BIGINT[] NOT NULL DEFAULT '{}';

-- Per counter i (p_ids sorted):
-- - p_reset[i]: the totals start from (p_base_up[i], p_base_down[i]) instead of their
--   committed values (a reset is a base of 0, 0), then p_up[i] / p_down[i] are added;
-- - p_record[i] >= 0: a set, whose difference to the totals it replaced (new base minus
--   old totals, possibly negative) is added to the hourly bucket p_record[i], so the sum
--   of a counter's buckets moves exactly as its totals do;
-- - p_check[i] > 0: apply only if the new value (up - down) does not cross the counter's
--   bounds: an up may not go above max_value, a down not below min_value (p_check 2:
--   nor below 0, the V1 floor), a set neither. A refused change writes nothing, its
--   hourly buckets included, and its row comes back with r_refused.
-- Each row also returns the totals the change replaced (r_old_up, r_old_down), from
-- which the node knows a set's history adjustment (NULL on a retry of a batch that
-- committed before, which answers r_refused from node_seq.refused).
-- Locks are taken as in tally_apply: hours first in (counter_id, hour) order (a checked
-- counter's buckets with 0, filled once it passed), then counters in id order.
CREATE FUNCTION tally_apply_ops(
    p_node TEXT, p_seq BIGINT, p_now DOUBLE PRECISION,
    p_ids BIGINT[], p_up BIGINT[], p_down BIGINT[], p_reset BOOLEAN[],
    p_at DOUBLE PRECISION[], p_base_up BIGINT[], p_base_down BIGINT[],
    p_check SMALLINT[], p_record BIGINT[],
    p_h_ids BIGINT[], p_h_hours BIGINT[], p_h_up BIGINT[], p_h_down BIGINT[]
) RETURNS TABLE (
    r_id BIGINT, r_up BIGINT, r_down BIGINT, r_at DOUBLE PRECISION, r_refused BOOLEAN,
    r_old_up BIGINT, r_old_down BIGINT
)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    checked BIGINT[];
    i INT;
    old_up BIGINT;
    old_down BIGINT;
    lo BIGINT;
    hi BIGINT;
    new_up BIGINT;
    new_down BIGINT;
    v BIGINT;
    v_refused BIGINT[] := '{}';
BEGIN
    UPDATE node_seq s SET seq = p_seq, updated_at = p_now
    WHERE s.node = p_node AND s.seq < p_seq;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM node_seq s WHERE s.node = p_node) THEN
            RETURN QUERY SELECT c.id, c.up_count, c.down_count, c.updated_at,
                    s.refused_seq = p_seq AND c.id = ANY(s.refused),
                    NULL::BIGINT, NULL::BIGINT  -- not known any more
                FROM counters c, node_seq s WHERE c.id = ANY(p_ids) AND s.node = p_node;
            RETURN;
        END IF;
        INSERT INTO node_seq (node, seq, updated_at) VALUES (p_node, p_seq, p_now);
    END IF;
    SELECT coalesce(array_agg(x.id), '{}') INTO checked
    FROM unnest(p_ids, p_check) AS x(id, chk) WHERE x.chk > 0;
    INSERT INTO counter_hours AS h (counter_id, hour, up, down)
    SELECT x.counter_id, x.hour,
        CASE WHEN x.counter_id = ANY(checked) THEN 0 ELSE x.up END,
        CASE WHEN x.counter_id = ANY(checked) THEN 0 ELSE x.down END
    FROM unnest(p_h_ids, p_h_hours, p_h_up, p_h_down) AS x(counter_id, hour, up, down)
    ORDER BY 1, 2
    ON CONFLICT (counter_id, hour)
    DO UPDATE SET up = h.up + excluded.up, down = h.down + excluded.down;
    FOR i IN 1 .. cardinality(p_ids) LOOP
        SELECT c.up_count, c.down_count, c.min_value, c.max_value
        INTO old_up, old_down, lo, hi
        FROM counters c WHERE c.id = p_ids[i] FOR UPDATE;
        CONTINUE WHEN NOT FOUND;  -- deleted meanwhile
        new_up := CASE WHEN p_reset[i] THEN p_base_up[i] ELSE old_up END + p_up[i];
        new_down := CASE WHEN p_reset[i] THEN p_base_down[i] ELSE old_down END + p_down[i];
        IF p_check[i] > 0 THEN
            v := new_up - new_down;
            IF p_check[i] = 2 THEN
                lo := GREATEST(COALESCE(lo, 0), 0);
            END IF;
            IF (hi IS NOT NULL AND v > hi AND (p_up[i] > 0 OR p_reset[i]))
                OR (lo IS NOT NULL AND v < lo AND (p_down[i] > 0 OR p_reset[i])) THEN
                v_refused := v_refused || p_ids[i];
                RETURN QUERY SELECT c.id, c.up_count, c.down_count, c.updated_at, TRUE,
                        old_up, old_down
                    FROM counters c WHERE c.id = p_ids[i];
                CONTINUE;
            END IF;
            UPDATE counter_hours h SET up = h.up + x.up, down = h.down + x.down
            FROM unnest(p_h_ids, p_h_hours, p_h_up, p_h_down) AS x(counter_id, hour, up, down)
            WHERE x.counter_id = p_ids[i] AND h.counter_id = x.counter_id AND h.hour = x.hour;
        END IF;
        IF p_record[i] >= 0 THEN
            UPDATE counter_hours h
            SET up = h.up + p_base_up[i] - old_up, down = h.down + p_base_down[i] - old_down
            WHERE h.counter_id = p_ids[i] AND h.hour = p_record[i];
        END IF;
        RETURN QUERY
        UPDATE counters c
        SET up_count = new_up, down_count = new_down,
            updated_at = GREATEST(c.updated_at, p_at[i])
        WHERE c.id = p_ids[i]
        RETURNING c.id, c.up_count, c.down_count, c.updated_at, FALSE, old_up, old_down;
    END LOOP;
    IF cardinality(v_refused) > 0 THEN
        UPDATE node_seq s SET refused_seq = p_seq, refused = v_refused WHERE s.node = p_node;
    END IF;
END
$$;
