-- After the sale: when each order ships and arrives (real UTC instants, computed at
-- placement from the store clock's speed), its shipments, cancellations and returns.

ALTER TABLE orders ADD COLUMN ship_at TEXT NOT NULL DEFAULT '';
ALTER TABLE orders ADD COLUMN deliver_at TEXT NOT NULL DEFAULT '';
ALTER TABLE orders ADD COLUMN cancelled_at TEXT;
ALTER TABLE orders ADD COLUMN cancel_reason TEXT;
CREATE INDEX orders_by_status ON orders (status);

CREATE TABLE shipments (
    id               TEXT PRIMARY KEY,
    order_id         TEXT NOT NULL REFERENCES orders (id),
    carrier          TEXT NOT NULL,
    tracking_number  TEXT NOT NULL,
    skus             TEXT NOT NULL,
    shipped_at       TEXT NOT NULL,
    delivered_at     TEXT
);
CREATE INDEX shipments_by_order ON shipments (order_id);

CREATE TABLE returns (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES orders (id),
    status       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    skus         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    decision     TEXT
);
CREATE INDEX returns_by_order ON returns (order_id);
