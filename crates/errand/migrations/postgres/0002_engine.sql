-- The order engine: the durable job queue, retailer accounts (secrets encrypted),
-- placement attempts (the exactly-once record), tracking numbers, and what placement
-- learns about an order.

ALTER TABLE orders ADD COLUMN retailer text;
ALTER TABLE orders ADD COLUMN job_result jsonb;
ALTER TABLE orders ADD COLUMN expiration jsonb;
ALTER TABLE orders ADD COLUMN expires_at timestamptz;
-- The managed account that placed the order (tracking signs in with it).
ALTER TABLE orders ADD COLUMN placed_with text;

-- Jobs live here until they finish (then they are deleted) or die (then they stay for
-- an operator: `errand jobs list|retry`).
CREATE TABLE jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL,
    order_id      uuid,
    payload       jsonb NOT NULL,
    state         text NOT NULL,
    attempt       integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL,
    run_at        timestamptz NOT NULL,
    locked_by     text,
    lease_until   timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX jobs_ready ON jobs (run_at, id) WHERE state = 'available';
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'running';
-- At most one live job of a kind per order (one placement, one tracker).
CREATE UNIQUE INDEX jobs_one_live_per_order ON jobs (kind, order_id)
    WHERE order_id IS NOT NULL AND state <> 'dead';

CREATE TABLE retailer_accounts (
    id                   text PRIMARY KEY,
    account_id           uuid NOT NULL REFERENCES accounts (id),
    livemode             boolean NOT NULL,
    retailer             text NOT NULL,
    email                text NOT NULL,
    secrets              bytea NOT NULL,
    has_totp             boolean NOT NULL,
    active               boolean NOT NULL,
    checkout_order_id    uuid,
    checkout_lease_until timestamptz,
    last_used_at         timestamptz,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    deleted_at           timestamptz
);
CREATE INDEX retailer_accounts_by_tenant ON retailer_accounts (account_id, livemode, retailer);

-- Committed before the retailer is asked to place; a resumed job that finds an
-- unresolved attempt asks the retailer about `reference` before anything else.
CREATE TABLE placement_attempts (
    order_id            uuid NOT NULL REFERENCES orders (id),
    attempt             integer NOT NULL,
    retailer_account_id text NOT NULL,
    reference           text NOT NULL,
    expected_total      bigint NOT NULL,
    state               text NOT NULL,
    settles_at          timestamptz NOT NULL,
    merchant_order_id   text,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (order_id, attempt)
);

CREATE TABLE tracking_numbers (
    id               uuid PRIMARY KEY,
    order_id         uuid NOT NULL REFERENCES orders (id),
    carrier          text NOT NULL,
    tracking_number  text NOT NULL,
    created_at       timestamptz NOT NULL,
    UNIQUE (order_id, tracking_number)
);
