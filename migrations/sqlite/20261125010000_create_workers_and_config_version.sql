-- Worker configurations and the config version that agents wait on.
-- SQLite twin of migrations/postgres; INTEGER is SQLite's 64-bit integer.

CREATE TABLE IF NOT EXISTS workers (
    name        TEXT PRIMARY KEY,
    agent       TEXT NOT NULL DEFAULT '',
    mpu         INTEGER NOT NULL DEFAULT 0,
    -- The commands as the seed's JSON list, validated before it is stored.
    commands    TEXT NOT NULL DEFAULT '[]',
    -- The config version of the change that wrote this row last.
    version     INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);

-- One row; every change to `workers` bumps it in the same transaction.
CREATE TABLE IF NOT EXISTS config_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);

INSERT INTO config_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
