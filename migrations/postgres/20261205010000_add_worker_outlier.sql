-- Outlier ejection and queue bound (issue 17): the worker JSON's optional `outlier`
-- object, as JSON; NULL means the defaults.
ALTER TABLE workers ADD COLUMN outlier TEXT;

-- Each instance's ejections from its agent's rotation (cumulative) and how long it has
-- been out of full rotation at the sample (a gauge, ms).
ALTER TABLE instance_samples ADD COLUMN ejections BIGINT NOT NULL DEFAULT 0;
ALTER TABLE instance_samples ADD COLUMN ejected_ms BIGINT NOT NULL DEFAULT 0;
