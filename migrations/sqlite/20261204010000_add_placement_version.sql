-- The placement version: it moves whenever the set of (agent, worker, instance count)
-- that GET /agents lists changes (a heartbeat whose instances differ from the stored
-- ones, an agent with instances joining again, leaving or forgotten), in the same
-- transaction as the change. Agents wait on it (GET /agents?after=V) as they wait on
-- the config version, so every proxy on one database wakes them alike.
-- One row, like config_version. SQLite twin of migrations/postgres.
CREATE TABLE IF NOT EXISTS placement_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);

INSERT INTO placement_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
