-- The agent registry: live agents and the worker instances attached to each.
-- Monitoring (per-worker counters reported by agents) and alarms come in later
-- migrations and key on agents.address and workers.name.

CREATE TABLE IF NOT EXISTS agents (
    address       TEXT PRIMARY KEY,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS agents_last_seen_ms ON agents (last_seen_ms);

CREATE TABLE IF NOT EXISTS agent_instances (
    agent   TEXT NOT NULL REFERENCES agents (address) ON DELETE CASCADE,
    worker  TEXT NOT NULL,
    count   BIGINT NOT NULL,
    PRIMARY KEY (agent, worker)
);

CREATE INDEX IF NOT EXISTS agent_instances_worker ON agent_instances (worker);
