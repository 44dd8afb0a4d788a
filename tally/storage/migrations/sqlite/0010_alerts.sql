-- Issue 24 part 2: alerts and webhooks (tally/alerts.py, tally/storage/alerts.py).
-- A rule fires into `alert_outbox` from a trigger, so in the transaction of the change
-- that made it fire: a batch that commits has its firings, one that does not has none.
-- The trigger runs only for a counter whose `watched` flag is set (it or its workspace
-- has a rule: kept by AlertTables and by `counters_watched` below): a count of any
-- other counter pays one flag test.
ALTER TABLE counters ADD COLUMN watched INTEGER NOT NULL DEFAULT 0;

CREATE TABLE webhooks (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    url           TEXT NOT NULL,
    secret        TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    created_at    REAL NOT NULL
);
CREATE INDEX webhooks_workspace ON webhooks (workspace_id);

-- kind: above / below (threshold: the value), rate (threshold: events in a UTC hour),
-- quiet (threshold: seconds without a change). counter_id NULL: any counter of the
-- workspace. One target: webhook_id or email.
CREATE TABLE alert_rules (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    counter_id    INTEGER REFERENCES counters(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    threshold     INTEGER NOT NULL,
    webhook_id    INTEGER REFERENCES webhooks(id) ON DELETE CASCADE,
    email         TEXT,
    created_at    REAL NOT NULL
);
CREATE INDEX alert_rules_counter ON alert_rules (counter_id);
CREATE INDEX alert_rules_workspace ON alert_rules (workspace_id);

-- per rule and counter: the events of the hour `hour` (rate), the updated_at of the
-- quiet spell already reported (quiet) and the sweep that reported it
CREATE TABLE alert_state (
    rule_id     INTEGER NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    counter_id  INTEGER NOT NULL REFERENCES counters(id) ON DELETE CASCADE,
    hour        INTEGER NOT NULL DEFAULT 0,
    events      INTEGER NOT NULL DEFAULT 0,
    quiet_mark  REAL,
    sweep       TEXT,
    PRIMARY KEY (rule_id, counter_id)
);

-- one row per firing and target; state 0 pending, 1 delivered, 2 given up.
-- lease_node/lease_until: the node delivering it now (tally/webhooks.py).
CREATE TABLE alert_outbox (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL UNIQUE,
    workspace_id    INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    workspace_slug  TEXT NOT NULL,
    counter_id      INTEGER NOT NULL,
    counter_name    TEXT NOT NULL,
    rule_id         INTEGER,
    kind            TEXT NOT NULL,
    threshold       INTEGER NOT NULL,
    value_before    INTEGER NOT NULL,
    value           INTEGER NOT NULL,
    fired_at        REAL NOT NULL,
    webhook_id      INTEGER REFERENCES webhooks(id) ON DELETE CASCADE,
    email           TEXT,
    state           INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at         REAL NOT NULL,
    lease_node      TEXT,
    lease_until     REAL NOT NULL DEFAULT 0,
    delivered_at    REAL,
    last_status     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alert_outbox_due ON alert_outbox (next_at) WHERE state = 0;
CREATE INDEX alert_outbox_workspace ON alert_outbox (workspace_id, id);

CREATE TABLE alert_deliveries (
    id          INTEGER PRIMARY KEY,
    outbox_id   INTEGER NOT NULL REFERENCES alert_outbox(id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    node        TEXT NOT NULL,
    started_at  REAL NOT NULL,
    latency     REAL NOT NULL,
    status      INTEGER,
    error       TEXT NOT NULL DEFAULT '',
    response    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alert_deliveries_outbox ON alert_deliveries (outbox_id);

-- a counter created in a workspace with an any-counter rule is watched from the start
CREATE TRIGGER counters_watched AFTER INSERT ON counters
WHEN EXISTS (
    SELECT 1 FROM alert_rules r WHERE r.workspace_id = NEW.workspace_id AND r.counter_id IS NULL
) BEGIN
    UPDATE counters SET watched = 1 WHERE id = NEW.id;
END;

-- above: the value reaches the threshold from below (old < t <= new); below: from above
-- (old > t >= new); rate: the events of the UTC hour of the change pass the threshold
-- (old <= t < new; a reset or set adds the totals it raised). The same rules as
-- tally_alert_counts in migrations/postgresql/0014_alerts.sql.
CREATE TRIGGER alert_counts AFTER UPDATE OF up_count, down_count ON counters
WHEN NEW.watched BEGIN
    INSERT INTO alert_outbox (
        event_id, workspace_id, workspace_slug, counter_id, counter_name, rule_id, kind,
        threshold, value_before, value, fired_at, webhook_id, email, next_at
    )
    SELECT 'msg_' || lower(hex(randomblob(16))), r.workspace_id,
        (SELECT slug FROM workspaces WHERE id = NEW.workspace_id), NEW.id, NEW.name, r.id,
        r.kind, r.threshold, OLD.up_count - OLD.down_count, NEW.up_count - NEW.down_count,
        (julianday('now') - 2440587.5) * 86400.0, r.webhook_id, r.email,
        (julianday('now') - 2440587.5) * 86400.0
    FROM alert_rules r LEFT JOIN alert_state s ON s.rule_id = r.id AND s.counter_id = NEW.id
    WHERE (r.counter_id = NEW.id OR (r.counter_id IS NULL AND r.workspace_id = NEW.workspace_id))
      AND (
        (r.kind = 'above' AND OLD.up_count - OLD.down_count < r.threshold
            AND NEW.up_count - NEW.down_count >= r.threshold)
        OR (r.kind = 'below' AND OLD.up_count - OLD.down_count > r.threshold
            AND NEW.up_count - NEW.down_count <= r.threshold)
        OR (r.kind = 'rate'
            AND (CASE WHEN s.hour = CAST(NEW.updated_at / 3600 AS INTEGER) THEN s.events
                 ELSE 0 END) <= r.threshold
            AND (CASE WHEN s.hour = CAST(NEW.updated_at / 3600 AS INTEGER) THEN s.events
                 ELSE 0 END)
                + MAX(NEW.up_count - OLD.up_count, 0) + MAX(NEW.down_count - OLD.down_count, 0)
                > r.threshold)
      );
    INSERT INTO alert_state (rule_id, counter_id, hour, events)
    SELECT r.id, NEW.id, CAST(NEW.updated_at / 3600 AS INTEGER),
        MAX(NEW.up_count - OLD.up_count, 0) + MAX(NEW.down_count - OLD.down_count, 0)
    FROM alert_rules r
    WHERE r.kind = 'rate'
      AND (r.counter_id = NEW.id OR (r.counter_id IS NULL AND r.workspace_id = NEW.workspace_id))
    ON CONFLICT (rule_id, counter_id) DO UPDATE SET
        events = CASE WHEN hour = excluded.hour THEN events + excluded.events
                 ELSE excluded.events END,
        hour = excluded.hour;
END;
