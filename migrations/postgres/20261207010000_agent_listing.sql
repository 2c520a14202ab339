-- An agent's row holds all that GET /agents lists of it, so that one multi-row
-- upsert records a batch of heartbeats and one read of N rows gives the placement:
--   instances  the instances it reported last, as JSON sorted by worker
--              ([{"worker":"add","count":2}]), compared as text;
--   listed     1 while it is in the placement, 0 once the expiry sweep found it silent
--              past the TTL (a write that moves the placement version, so that agents
--              can follow the placement by its changes alone);
--   moved      1 when the write that made this row's state moved the placement (new,
--              listed again, or other instances), read back by that write's RETURNING.
-- The index on last_seen_ms goes: every heartbeat moves it, so every heartbeat's update
-- wrote an index entry (and could not be a HOT update on Postgres); the sweep that reads
-- last_seen_ms scans a table of one row per agent twice a second instead.
-- agent_instances is gone: agents resend their instances every second, so none are
-- lost by not carrying them over.
ALTER TABLE agents ADD COLUMN instances TEXT NOT NULL DEFAULT '[]';
ALTER TABLE agents ADD COLUMN listed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN moved INTEGER NOT NULL DEFAULT 0;
DROP INDEX agents_last_seen_ms;
DROP TABLE agent_instances;
