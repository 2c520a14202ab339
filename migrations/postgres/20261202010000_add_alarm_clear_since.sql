-- When an active alarm's condition was last seen to stop holding (NULL while it holds).
-- It resolves once the condition has stayed away for the proxy's alarm_resolve_ms, so a
-- condition that comes and goes keeps one alarm open instead of a storm of them.
ALTER TABLE alarms ADD COLUMN clear_since_ms BIGINT;
