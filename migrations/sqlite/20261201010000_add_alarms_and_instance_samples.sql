-- Monitoring and alarms (issue 6): each worker's optional alarm thresholds, the
-- counters agents report for each instance every heartbeat, and the alarms raised.
-- SQLite twin of migrations/postgres: INTEGER is SQLite's 64-bit integer, REAL its double.

-- The worker JSON's optional `alarms` object, as JSON; NULL means the defaults.
ALTER TABLE workers ADD COLUMN alarms TEXT;

-- One row per reported instance per heartbeat, pruned after the stats retention.
-- Counters are cumulative since the instance attached; a drop means the agent restarted.
CREATE TABLE IF NOT EXISTS instance_samples (
    agent           TEXT NOT NULL,
    instance        INTEGER NOT NULL,
    worker          TEXT NOT NULL,
    at_ms           INTEGER NOT NULL,
    received        INTEGER NOT NULL,
    responses       INTEGER NOT NULL,
    errors          INTEGER NOT NULL,
    timeouts        INTEGER NOT NULL,
    stops           INTEGER NOT NULL,
    retries         INTEGER NOT NULL,
    restarts        INTEGER NOT NULL,
    in_flight       INTEGER NOT NULL,
    latency_sum_us  INTEGER NOT NULL,
    -- The 17 non-cumulative latency bucket counts as a JSON list.
    latency_counts  TEXT NOT NULL,
    PRIMARY KEY (agent, instance, at_ms)
);

CREATE INDEX IF NOT EXISTS instance_samples_at_ms ON instance_samples (at_ms);

-- Alarms fired and resolved. At most one active alarm per key, so that several
-- proxies evaluating the same rules fire it once and resolve it once.
CREATE TABLE IF NOT EXISTS alarms (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    key          TEXT NOT NULL,
    rule         TEXT NOT NULL,
    worker       TEXT,
    agent        TEXT,
    message      TEXT NOT NULL,
    value        REAL,
    threshold    REAL,
    fired_ms     INTEGER NOT NULL,
    resolved_ms  INTEGER
);

CREATE UNIQUE INDEX IF NOT EXISTS alarms_active_key ON alarms (key) WHERE resolved_ms IS NULL;
CREATE INDEX IF NOT EXISTS alarms_fired_ms ON alarms (fired_ms);
