-- One webhook endpoint per account and mode. Secrets are sealed with the master key
-- (see accounts::vault); during a rotation the previous secret signs too, until
-- `previous_valid_until`.

CREATE TABLE webhook_endpoints (
    account_id            TEXT NOT NULL REFERENCES accounts (id),
    livemode              BOOLEAN NOT NULL,
    url                   TEXT,
    secret                BLOB NOT NULL,
    previous_secret       BLOB,
    previous_valid_until  TEXT,
    disabled_at           TEXT,
    disabled_reason       TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    PRIMARY KEY (account_id, livemode)
);
