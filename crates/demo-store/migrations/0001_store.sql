-- The demo store's own database: customers, sessions, stock, carts and orders.

CREATE TABLE customers (
    id                  INTEGER PRIMARY KEY,
    email               TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_salt       TEXT NOT NULL,
    password_hash       TEXT NOT NULL,
    card_last4          TEXT NOT NULL,
    gift_balance_cents  INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL
);

CREATE TABLE sessions (
    token       TEXT PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    created_at  TEXT NOT NULL
);

CREATE TABLE stock (
    sku       TEXT PRIMARY KEY,
    quantity  INTEGER NOT NULL CHECK (quantity >= 0)
);

CREATE TABLE cart_lines (
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    product_id  TEXT NOT NULL,
    sku         TEXT NOT NULL,
    offer_id    TEXT NOT NULL,
    quantity    INTEGER NOT NULL,
    added_at    TEXT NOT NULL,
    PRIMARY KEY (customer_id, sku, offer_id)
);

CREATE TABLE orders (
    id                  TEXT PRIMARY KEY,
    customer_id         INTEGER NOT NULL REFERENCES customers (id),
    buyer_reference     TEXT,
    status              TEXT NOT NULL,
    shipping_method     TEXT NOT NULL,
    shipping_address    TEXT NOT NULL,
    gift_message        TEXT,
    promo_code          TEXT,
    subtotal            INTEGER NOT NULL,
    shipping            INTEGER NOT NULL,
    tax                 INTEGER NOT NULL,
    discount            INTEGER NOT NULL,
    total               INTEGER NOT NULL,
    placed_at           TEXT NOT NULL,
    estimated_delivery  TEXT NOT NULL
);
CREATE INDEX orders_by_customer_reference ON orders (customer_id, buyer_reference);

CREATE TABLE order_lines (
    order_id    TEXT NOT NULL REFERENCES orders (id),
    position    INTEGER NOT NULL,
    product_id  TEXT NOT NULL,
    sku         TEXT NOT NULL,
    offer_id    TEXT NOT NULL,
    title       TEXT NOT NULL,
    quantity    INTEGER NOT NULL,
    unit_price  INTEGER NOT NULL,
    line_total  INTEGER NOT NULL,
    PRIMARY KEY (order_id, position)
);
