-- Returns of delivered items. The engine asks the retailer for each exactly once: the
-- return is recorded first, `request_state` says how far asking it got (`pending`, not
-- asked yet; `submitting`, asked with the return's id as reference and unanswered until
-- `settles_at`; `requested`, answered), and a run that finds it `submitting` looks the
-- reference up at the retailer before asking again. It is then followed until the
-- retailer credits or denies it. account_id and livemode repeat the order's so reads
-- are scoped to the tenant without a join.

CREATE TABLE order_returns (
    id                 TEXT PRIMARY KEY,
    order_id           TEXT NOT NULL REFERENCES orders (id),
    account_id         TEXT NOT NULL,
    livemode           BOOLEAN NOT NULL,
    status             TEXT NOT NULL,
    reason             TEXT NOT NULL,
    notes              TEXT,
    resolution_notes   TEXT,
    merchant_return_id TEXT,
    request_state      TEXT NOT NULL,
    settles_at         TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);
CREATE INDEX order_returns_by_tenant ON order_returns (account_id, livemode, created_at, id);
CREATE INDEX order_returns_by_order ON order_returns (order_id);

CREATE TABLE order_return_items (
    return_id     TEXT NOT NULL REFERENCES order_returns (id),
    order_item_id TEXT NOT NULL REFERENCES order_items (id),
    quantity      INTEGER NOT NULL,
    PRIMARY KEY (return_id, order_item_id)
);
