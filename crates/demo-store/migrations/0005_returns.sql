-- Returns as a real store runs them: the buyer's reference (unique per customer, so a
-- repeated request finds the return it made), notes, the returned lines (which order
-- line, how many, at what price), and their life on the store clock: approved →
-- received (receive_at, a real instant fixed at approval) → credited (credit_at), with
-- the refund.

ALTER TABLE returns ADD COLUMN customer_id INTEGER REFERENCES customers (id);
ALTER TABLE returns ADD COLUMN reference TEXT;
ALTER TABLE returns ADD COLUMN notes TEXT;
ALTER TABLE returns ADD COLUMN receive_at TEXT;
ALTER TABLE returns ADD COLUMN credit_at TEXT;
ALTER TABLE returns ADD COLUMN received_at TEXT;
ALTER TABLE returns ADD COLUMN credited_at TEXT;
ALTER TABLE returns ADD COLUMN refund INTEGER;

UPDATE returns SET customer_id = (SELECT o.customer_id FROM orders o WHERE o.id = returns.order_id);

CREATE UNIQUE INDEX returns_by_customer_reference ON returns (customer_id, reference)
    WHERE reference IS NOT NULL;
CREATE INDEX returns_by_status ON returns (status);

CREATE TABLE return_lines (
    return_id   TEXT NOT NULL REFERENCES returns (id),
    -- The order line returned from (its position in order_lines).
    order_line  INTEGER NOT NULL,
    sku         TEXT NOT NULL,
    product_id  TEXT NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity >= 1),
    unit_price  INTEGER NOT NULL,
    PRIMARY KEY (return_id, order_line)
);

-- Returns made before lines existed took every unit of the SKUs they list.
INSERT OR IGNORE INTO return_lines (return_id, order_line, sku, product_id, quantity, unit_price)
SELECT r.id, l.position, l.sku, l.product_id, l.quantity, l.unit_price
FROM returns r, json_each(r.skus) j, order_lines l
WHERE l.order_id = r.order_id AND l.sku = j.value;
