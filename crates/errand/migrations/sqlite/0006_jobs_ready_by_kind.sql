-- Each worker pool claims only its own kinds (webhook deliveries have a pool of their
-- own): find its due jobs without scanning past the other pools'.
CREATE INDEX jobs_ready_by_kind ON jobs (kind, run_at, id) WHERE state = 'available';
