-- When an endpoint's current run of failed attempts began (NULL after any success): an
-- endpoint failing continuously for `webhook_disable_after_failing_seconds` is disabled.
ALTER TABLE webhook_endpoints ADD COLUMN failing_since TEXT;
