-- One row per reporting instance with its newest sample's time, so that a window's two
-- samples per instance are found by index (the newest, and the newest at or before the
-- window's start) instead of by scanning every sample kept.
CREATE TABLE IF NOT EXISTS instance_series (
    agent      TEXT NOT NULL,
    instance   BIGINT NOT NULL,
    worker     TEXT NOT NULL,
    latest_ms  BIGINT NOT NULL,
    PRIMARY KEY (agent, instance, worker)
);

CREATE INDEX IF NOT EXISTS instance_series_latest_ms ON instance_series (latest_ms);
