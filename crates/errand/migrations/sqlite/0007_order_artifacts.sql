-- What the browser driver saw while buying: screenshots (PNG) of each phase and the
-- page's HTML at a failure, kept with the order and served to its owner. One row per
-- (order, name, kind): a retried phase replaces its artifact instead of adding one.
-- account_id and livemode repeat the order's so every read is scoped to the tenant
-- without a join.

CREATE TABLE order_artifacts (
    id            TEXT PRIMARY KEY,
    order_id      TEXT NOT NULL REFERENCES orders (id),
    account_id    TEXT NOT NULL,
    livemode      BOOLEAN NOT NULL,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    content       BLOB NOT NULL,
    size          INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    UNIQUE (order_id, name, kind)
);
-- An order's artifacts in the order they were taken (listings read every listed order's).
CREATE INDEX order_artifacts_by_order ON order_artifacts (order_id, kind, created_at, id);
