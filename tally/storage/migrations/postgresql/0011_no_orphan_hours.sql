-- Issue 20: a batch writes hourly buckets only for counters that still exist. A change
-- acknowledged in buffered mode just before its counter was deleted reached the database
-- after the delete, and its bucket stayed: nothing deletes the buckets of a counter that
-- is gone (delete_counter deletes them with it). Both functions as in 0004 and 0006, but
-- for the EXISTS on each INSERT INTO counter_hours (SQLite's _APPLY_HOURS has the same).
-- Lock order unchanged: hours first, then counters, each in id order. The EXISTS reads
-- the counter's primary key in the statement's snapshot: a delete that committed before
-- the batch's statement started is seen (the buffered case: docs/durability.md).

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
        SELECT p_h_ids[1], p_h_hours[1], p_h_up[1], p_h_down[1]
        WHERE EXISTS (SELECT 1 FROM counters c WHERE c.id = p_h_ids[1])
        ON CONFLICT (counter_id, hour)
        DO UPDATE SET up = h.up + excluded.up, down = h.down + excluded.down;
    ELSE
        -- in (counter_id, hour) order: see 0002
        INSERT INTO counter_hours AS h (counter_id, hour, up, down)
        SELECT * FROM unnest(p_h_ids, p_h_hours, p_h_up, p_h_down) AS v(counter_id, hour, up, down)
        WHERE EXISTS (SELECT 1 FROM counters c WHERE c.id = v.counter_id)
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

CREATE OR REPLACE FUNCTION tally_apply_ops(
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
    WHERE EXISTS (SELECT 1 FROM counters c WHERE c.id = x.counter_id)
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
