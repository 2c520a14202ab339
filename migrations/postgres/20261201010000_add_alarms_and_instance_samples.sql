-- Monitoring and alarms (issue 6): each worker's optional alarm thresholds, the
-- counters agents report for each instance every heartbeat, and the alarms raised.
-- BIGINT milliseconds, TEXT JSON and a partial unique index, which CockroachDB and
-- YugabyteDB run too.

-- The worker JSON's optional `alarms` object, as JSON; NULL means the defaults.
ALTER TABLE workers ADD COLUMN alarms TEXT;

-- One row per reported instance per heartbeat, pruned after the stats retention.
-- Counters are cumulative since the instance attached; a drop means the agent restarted.
CREATE TABLE IF NOT EXISTS instance_samples (
    agent           TEXT NOT NULL,
    instance        BIGINT NOT NULL,
    worker          TEXT NOT NULL,
    at_ms           BIGINT NOT NULL,
    received        BIGINT NOT NULL,
    responses       BIGINT NOT NULL,
    errors          BIGINT NOT NULL,
    timeouts        BIGINT NOT NULL,
    stops           BIGINT NOT NULL,
    retries         BIGINT NOT NULL,
    restarts        BIGINT NOT NULL,
    in_flight       BIGINT NOT NULL,
    latency_sum_us  BIGINT NOT NULL,
    -- The 17 non-cumulative latency bucket counts as a JSON list.
    latency_counts  TEXT NOT NULL,
    PRIMARY KEY (agent, instance, at_ms)
);

CREATE INDEX IF NOT EXISTS instance_samples_at_ms ON instance_samples (at_ms);

-- Alarms fired and resolved. At most one active alarm per key, so that several
-- proxies evaluating the same rules fire it once and resolve it once.
CREATE TABLE IF NOT EXISTS alarms (
    id           BIGSERIAL PRIMARY KEY,
    key          TEXT NOT NULL,
    rule         TEXT NOT NULL,
    worker       TEXT,
    agent        TEXT,
    message      TEXT NOT NULL,
    value        DOUBLE PRECISION,
    threshold    DOUBLE PRECISION,
    fired_ms     BIGINT NOT NULL,
    resolved_ms  BIGINT
);

CREATE UNIQUE INDEX IF NOT EXISTS alarms_active_key ON alarms (key) WHERE resolved_ms IS NULL;
CREATE INDEX IF NOT EXISTS alarms_fired_ms ON alarms (fired_ms);
