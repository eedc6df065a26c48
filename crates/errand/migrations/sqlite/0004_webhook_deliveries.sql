-- A delivery per order event and endpoint, created in the transaction that records the
-- event (the outbox), and each attempt to deliver it.

CREATE TABLE webhook_deliveries (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL,
    livemode    BOOLEAN NOT NULL,
    order_id    TEXT NOT NULL,
    sequence    INTEGER NOT NULL,
    event       TEXT NOT NULL,
    status      TEXT NOT NULL,
    payload     TEXT,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_by_tenant ON webhook_deliveries (account_id, livemode, created_at DESC);

CREATE TABLE webhook_attempts (
    delivery_id  TEXT NOT NULL REFERENCES webhook_deliveries (id),
    attempt      INTEGER NOT NULL,
    attempted_at TEXT NOT NULL,
    http_status  INTEGER,
    duration_ms  INTEGER NOT NULL,
    error        TEXT,
    response     TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
