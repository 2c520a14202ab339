-- Each agent's routing counters per worker (issue 14): the steps its router refused
-- (no live instance, overloaded, unknown type) and the hand-offs it resent, which no
-- instance counts. One row per reporting worker per heartbeat, pruned after the stats
-- retention like instance_samples. Counters are cumulative since the agent's run
-- started; a drop means the agent restarted. Columns as damrey_wire::steps::Routing
-- declares them. SQLite twin of migrations/postgres: INTEGER is SQLite's 64-bit integer.
CREATE TABLE IF NOT EXISTS route_samples (
    agent                 TEXT NOT NULL,
    worker                TEXT NOT NULL,
    at_ms                 INTEGER NOT NULL,
    rejected_no_instance  INTEGER NOT NULL DEFAULT 0,
    rejected_overloaded   INTEGER NOT NULL DEFAULT 0,
    rejected_type         INTEGER NOT NULL DEFAULT 0,
    handoff_retries       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (agent, worker, at_ms)
);

CREATE INDEX IF NOT EXISTS route_samples_at_ms ON route_samples (at_ms);

-- One row per reporting (agent, worker) with its newest sample's time, as
-- instance_series does for instances: a window's two samples are found by index.
CREATE TABLE IF NOT EXISTS route_series (
    agent      TEXT NOT NULL,
    worker     TEXT NOT NULL,
    latest_ms  INTEGER NOT NULL,
    PRIMARY KEY (agent, worker)
);

CREATE INDEX IF NOT EXISTS route_series_latest_ms ON route_series (latest_ms);
