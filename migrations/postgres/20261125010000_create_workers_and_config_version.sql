-- Worker configurations and the config version that agents wait on.
-- Plain tables and BIGINT milliseconds so that CockroachDB and YugabyteDB run it too.

CREATE TABLE IF NOT EXISTS workers (
    name        TEXT PRIMARY KEY,
    agent       TEXT NOT NULL DEFAULT '',
    mpu         BIGINT NOT NULL DEFAULT 0,
    -- The commands as the seed's JSON list, validated before it is stored.
    commands    TEXT NOT NULL DEFAULT '[]',
    -- The config version of the change that wrote this row last.
    version     BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);

-- One row; every change to `workers` bumps it in the same transaction.
CREATE TABLE IF NOT EXISTS config_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL
);

INSERT INTO config_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
