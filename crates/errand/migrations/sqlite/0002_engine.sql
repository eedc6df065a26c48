-- The order engine: the durable job queue, retailer accounts (secrets encrypted),
-- placement attempts (the exactly-once record), tracking numbers, and what placement
-- learns about an order.

ALTER TABLE orders ADD COLUMN retailer TEXT;
ALTER TABLE orders ADD COLUMN job_result TEXT;
ALTER TABLE orders ADD COLUMN expiration TEXT;
ALTER TABLE orders ADD COLUMN expires_at TEXT;
-- The managed account that placed the order (tracking signs in with it).
ALTER TABLE orders ADD COLUMN placed_with TEXT;

-- Jobs live here until they finish (then they are deleted) or die (then they stay for
-- an operator: `errand jobs list|retry`).
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    order_id      TEXT,
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL,
    attempt       INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    run_at        TEXT NOT NULL,
    locked_by     TEXT,
    lease_until   TEXT,
    last_error    TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX jobs_ready ON jobs (run_at, id) WHERE state = 'available';
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'running';
-- At most one live job of a kind per order (one placement, one tracker).
CREATE UNIQUE INDEX jobs_one_live_per_order ON jobs (kind, order_id)
    WHERE order_id IS NOT NULL AND state <> 'dead';

CREATE TABLE retailer_accounts (
    id                   TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL REFERENCES accounts (id),
    livemode             BOOLEAN NOT NULL,
    retailer             TEXT NOT NULL,
    email                TEXT NOT NULL,
    secrets              BLOB NOT NULL,
    has_totp             BOOLEAN NOT NULL,
    active               BOOLEAN NOT NULL,
    checkout_order_id    TEXT,
    checkout_lease_until TEXT,
    last_used_at         TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    deleted_at           TEXT
);
CREATE INDEX retailer_accounts_by_tenant ON retailer_accounts (account_id, livemode, retailer);

-- Committed before the retailer is asked to place; a resumed job that finds an
-- unresolved attempt asks the retailer about `reference` before anything else.
CREATE TABLE placement_attempts (
    order_id            TEXT NOT NULL REFERENCES orders (id),
    attempt             INTEGER NOT NULL,
    retailer_account_id TEXT NOT NULL,
    reference           TEXT NOT NULL,
    expected_total      INTEGER NOT NULL,
    state               TEXT NOT NULL,
    settles_at          TEXT NOT NULL,
    merchant_order_id   TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    PRIMARY KEY (order_id, attempt)
);

CREATE TABLE tracking_numbers (
    id               TEXT PRIMARY KEY,
    order_id         TEXT NOT NULL REFERENCES orders (id),
    carrier          TEXT NOT NULL,
    tracking_number  TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    UNIQUE (order_id, tracking_number)
);
