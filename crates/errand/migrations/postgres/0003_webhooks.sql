-- One webhook endpoint per account and mode. Secrets are sealed with the master key
-- (see accounts::vault); during a rotation the previous secret signs too, until
-- `previous_valid_until`.

CREATE TABLE webhook_endpoints (
    account_id            uuid NOT NULL REFERENCES accounts (id),
    livemode              boolean NOT NULL,
    url                   text,
    secret                bytea NOT NULL,
    previous_secret       bytea,
    previous_valid_until  timestamptz,
    disabled_at           timestamptz,
    disabled_reason       text,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    PRIMARY KEY (account_id, livemode)
);
