-- Accounts (tenants), their API keys, orders with their items, the order-event log
-- (the outbox later read by the timeline and webhooks), and idempotency records.
-- Ids are UUIDs as text, timestamps RFC 3339 UTC text with fixed width, JSON as text.

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    name        TEXT NOT NULL,
    livemode    BOOLEAN NOT NULL,
    key_prefix  TEXT NOT NULL,
    key_hash    BLOB NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE orders (
    id                      TEXT PRIMARY KEY,
    account_id              TEXT NOT NULL REFERENCES accounts (id),
    livemode                BOOLEAN NOT NULL,
    status                  TEXT NOT NULL,
    max_price               INTEGER NOT NULL,
    attempts                INTEGER NOT NULL DEFAULT 0,
    shipping_address        TEXT NOT NULL,
    metadata                TEXT NOT NULL,
    po_number               TEXT,
    retailer_credentials_id TEXT,
    created_by              TEXT,
    last_event_sequence     INTEGER NOT NULL,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL
);
CREATE INDEX orders_by_tenant_and_time ON orders (account_id, livemode, created_at DESC, id DESC);

CREATE TABLE order_items (
    id                  TEXT PRIMARY KEY,
    order_id            TEXT NOT NULL REFERENCES orders (id),
    position            INTEGER NOT NULL,
    url                 TEXT NOT NULL,
    quantity            INTEGER NOT NULL,
    variant             TEXT,
    status              TEXT NOT NULL,
    cancellation_reason TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    UNIQUE (order_id, position)
);

CREATE TABLE order_events (
    id          TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL REFERENCES orders (id),
    account_id  TEXT NOT NULL,
    sequence    INTEGER NOT NULL,
    event       TEXT NOT NULL,
    status      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (order_id, sequence)
);

CREATE TABLE idempotency_keys (
    account_id    TEXT NOT NULL,
    livemode      BOOLEAN NOT NULL,
    key           TEXT NOT NULL,
    request_hash  BLOB NOT NULL,
    order_id      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (account_id, livemode, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
