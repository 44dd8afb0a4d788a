-- The workspaces' hourly totals (as migrations/sqlite/0013_workspace_hours.sql, which
-- says what they are for): for each (workspace, hour), the sum of its counters' buckets.
-- Kept in the transaction that changes the buckets: tally_apply and tally_apply_ops
-- below (as in 0011, but for their last statement), tally_delete_counter, the import
-- and the workspace's delete (PostgresStore, DashboardTables).
--
-- No foreign key to workspaces: a batch's insert here would take a KEY SHARE lock on the
-- workspace's row, which a workspace's delete holds while it waits for the batch's
-- counters (its cascade): a deadlock. delete_workspace deletes the rows itself, after its
-- counters, so a batch that kept a counter locked before has committed by then, and one
-- that comes after finds the counter gone.
--
-- Lock order. A batch locks buckets, then counters (0002), then these rows, last, in
-- (workspace_id, hour) order, in one statement: a transaction that holds one of these
-- rows waits for nothing but another of these rows of a later key, so no cycle goes
-- through them. A workspace-hour's row is shared by every counter of the workspace: two
-- nodes counting the same workspace in the same hour now commit one after the other
-- (each holds the row from its last statement to its commit), as two nodes counting
-- the same counter did already.
CREATE TABLE workspace_hours (
    workspace_id  BIGINT NOT NULL,
    hour          BIGINT NOT NULL,
    up            BIGINT NOT NULL DEFAULT 0,
    down          BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, hour)
);

INSERT INTO workspace_hours (workspace_id, hour, up, down)
SELECT c.workspace_id, h.hour, SUM(h.up), SUM(h.down)
FROM counter_hours h JOIN counters c ON c.id = h.counter_id
GROUP BY c.workspace_id, h.hour;

-- Add buckets' changes (counter id, hour, up, down) to their workspaces' totals: one
-- upsert per (workspace_id, hour), in that order; a change of a counter that is gone is
-- dropped (its bucket was not written, or was deleted with it), one that changes
-- nothing locks nothing.
CREATE FUNCTION tally_add_workspace_hours(
    p_ids BIGINT[], p_hours BIGINT[], p_up BIGINT[], p_down BIGINT[]
) RETURNS VOID
LANGUAGE plpgsql AS $$  -- plpgsql: its plan is kept (generic, as its callers' are)
BEGIN
    INSERT INTO workspace_hours AS w (workspace_id, hour, up, down)
    SELECT c.workspace_id, x.hour, SUM(x.up), SUM(x.down)
    FROM unnest(p_ids, p_hours, p_up, p_down) AS x(id, hour, up, down)
    JOIN counters c ON c.id = x.id
    GROUP BY c.workspace_id, x.hour
    HAVING SUM(x.up) <> 0 OR SUM(x.down) <> 0
    ORDER BY 1, 2
    ON CONFLICT (workspace_id, hour)
    DO UPDATE SET up = w.up + excluded.up, down = w.down + excluded.down;
END
$$;

-- A counter's delete with its buckets, their sums taken from its workspace's totals.
-- Buckets first (the batches' order), then the counter, then the totals. A batch that
-- held the counter's row before this delete could lock it has committed by then, and
-- may have written a new bucket this transaction's first DELETE did not see: it is read
-- again after the counter's delete and its sums subtracted too (it is left, an orphan
-- no read joins to a counter; deleting it could wait for a later batch that locked it
-- and waits for the counter's row: a deadlock). A batch after it finds the counter gone
-- and adds nothing here.
CREATE FUNCTION tally_delete_counter(p_id BIGINT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
DECLARE
    hs BIGINT[];
    us BIGINT[];
    ds BIGINT[];
    ws BIGINT;
BEGIN
    -- the buckets' locks in hour order first, as a batch takes them (a DELETE takes them
    -- in the order it finds the rows: two transactions could wait for each other)
    PERFORM FROM (
        SELECT 1 FROM counter_hours h WHERE h.counter_id = p_id ORDER BY h.hour FOR UPDATE
    ) AS locked;
    WITH d AS (DELETE FROM counter_hours h WHERE h.counter_id = p_id RETURNING h.hour, h.up, h.down)
    SELECT array_agg(d.hour), array_agg(d.up), array_agg(d.down) INTO hs, us, ds FROM d;
    DELETE FROM counters c WHERE c.id = p_id RETURNING c.workspace_id INTO ws;
    IF ws IS NULL THEN
        RETURN FALSE;
    END IF;
    SELECT coalesce(hs, '{}') || array_agg(h.hour), coalesce(us, '{}') || array_agg(h.up),
        coalesce(ds, '{}') || array_agg(h.down)
    INTO hs, us, ds
    FROM counter_hours h WHERE h.counter_id = p_id;
    INSERT INTO workspace_hours AS w (workspace_id, hour, up, down)
    SELECT ws, x.hour, -SUM(x.up), -SUM(x.down)
    FROM unnest(hs, us, ds) AS x(hour, up, down)
    GROUP BY x.hour
    HAVING SUM(x.up) <> 0 OR SUM(x.down) <> 0
    ORDER BY 2
    ON CONFLICT (workspace_id, hour)
    DO UPDATE SET up = w.up + excluded.up, down = w.down + excluded.down;
    RETURN TRUE;
END
$$;

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
    ELSE

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
    END IF;
    -- last, the workspaces' totals: the same buckets per (workspace_id, hour), in that
    -- order; of the counters still there (a counter deleted meanwhile kept no bucket)
    PERFORM tally_add_workspace_hours(p_h_ids, p_h_hours, p_h_up, p_h_down);
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
    accepted BIGINT[] := '{}';  -- the checked counters whose change was kept
    r_ids BIGINT[] := '{}';  -- the buckets a set or reset rewrote, by how much
    r_hours BIGINT[] := '{}';
    r_up BIGINT[] := '{}';
    r_down BIGINT[] := '{}';
    n BIGINT;
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
            accepted := accepted || p_ids[i];
        END IF;
        IF p_record[i] >= 0 THEN
            UPDATE counter_hours h
            SET up = h.up + p_base_up[i] - old_up, down = h.down + p_base_down[i] - old_down
            WHERE h.counter_id = p_ids[i] AND h.hour = p_record[i];
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n > 0 THEN
                r_ids := r_ids || p_ids[i];
                r_hours := r_hours || p_record[i];
                r_up := r_up || (p_base_up[i] - old_up);
                r_down := r_down || (p_base_down[i] - old_down);
            END IF;
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
    -- last, the workspaces' totals: what the buckets got above (of a checked counter
    -- only if its change was kept), and what a set or reset rewrote
    WITH kept AS (
        SELECT x.* FROM unnest(p_h_ids, p_h_hours, p_h_up, p_h_down) AS x(id, hour, up, down)
        WHERE NOT x.id = ANY(checked) OR x.id = ANY(accepted)
        UNION ALL
        SELECT * FROM unnest(r_ids, r_hours, r_up, r_down)
    )
    SELECT array_agg(k.id), array_agg(k.hour), array_agg(k.up), array_agg(k.down)
    INTO r_ids, r_hours, r_up, r_down FROM kept k;
    PERFORM tally_add_workspace_hours(r_ids, r_hours, r_up, r_down);
END
$$;
