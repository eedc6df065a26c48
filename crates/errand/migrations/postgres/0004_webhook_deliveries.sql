-- A delivery per order event and endpoint, created in the transaction that records the
-- event (the outbox), and each attempt to deliver it.

CREATE TABLE webhook_deliveries (
    id          text PRIMARY KEY,
    account_id  uuid NOT NULL,
    livemode    boolean NOT NULL,
    order_id    uuid NOT NULL,
    sequence    bigint NOT NULL,
    event       text NOT NULL,
    status      text NOT NULL,
    payload     text,
    state       text NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX webhook_deliveries_by_tenant ON webhook_deliveries (account_id, livemode, created_at DESC);

CREATE TABLE webhook_attempts (
    delivery_id  text NOT NULL REFERENCES webhook_deliveries (id),
    attempt      integer NOT NULL,
    attempted_at timestamptz NOT NULL,
    http_status  integer,
    duration_ms  bigint NOT NULL,
    error        text,
    response     text,
    PRIMARY KEY (delivery_id, attempt)
);
