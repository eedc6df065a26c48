-- Accounts (tenants), their API keys, orders with their items, the order-event log
-- (the outbox later read by the timeline and webhooks), and idempotency records.

CREATE TABLE accounts (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts (id),
    name        text NOT NULL,
    livemode    boolean NOT NULL,
    key_prefix  text NOT NULL,
    key_hash    bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);

CREATE TABLE orders (
    id                      uuid PRIMARY KEY,
    account_id              uuid NOT NULL REFERENCES accounts (id),
    livemode                boolean NOT NULL,
    status                  text NOT NULL,
    max_price               bigint NOT NULL,
    attempts                integer NOT NULL DEFAULT 0,
    shipping_address        jsonb NOT NULL,
    metadata                jsonb NOT NULL,
    po_number               text,
    retailer_credentials_id text,
    created_by              text,
    last_event_sequence     bigint NOT NULL,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL
);
CREATE INDEX orders_by_tenant_and_time ON orders (account_id, livemode, created_at DESC, id DESC);

CREATE TABLE order_items (
    id                  uuid PRIMARY KEY,
    order_id            uuid NOT NULL REFERENCES orders (id),
    position            integer NOT NULL,
    url                 text NOT NULL,
    quantity            integer NOT NULL,
    variant             jsonb,
    status              text NOT NULL,
    cancellation_reason text,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    UNIQUE (order_id, position)
);

CREATE TABLE order_events (
    id          uuid PRIMARY KEY,
    order_id    uuid NOT NULL REFERENCES orders (id),
    account_id  uuid NOT NULL,
    sequence    bigint NOT NULL,
    event       text NOT NULL,
    status      text NOT NULL,
    detail      jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    UNIQUE (order_id, sequence)
);

CREATE TABLE idempotency_keys (
    account_id    uuid NOT NULL,
    livemode      boolean NOT NULL,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,
    order_id      uuid NOT NULL,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (account_id, livemode, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
