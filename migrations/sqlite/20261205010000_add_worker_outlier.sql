-- Outlier ejection and queue bound (issue 17): the worker JSON's optional `outlier`
-- object, as JSON; NULL means the defaults.
ALTER TABLE workers ADD COLUMN outlier TEXT;
