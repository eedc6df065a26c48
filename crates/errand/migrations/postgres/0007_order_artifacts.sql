-- What the browser driver saw while buying: screenshots (PNG) of each phase and the
-- page's HTML at a failure, kept with the order and served to its owner. One row per
-- (order, name, kind): a retried phase replaces its artifact instead of adding one.
-- account_id and livemode repeat the order's so every read is scoped to the tenant
-- without a join.

CREATE TABLE order_artifacts (
    id            uuid PRIMARY KEY,
    order_id      uuid NOT NULL REFERENCES orders (id),
    account_id    uuid NOT NULL,
    livemode      boolean NOT NULL,
    name          text NOT NULL,
    kind          text NOT NULL,
    content_type  text NOT NULL,
    content       bytea NOT NULL,
    size          bigint NOT NULL,
    created_at    timestamptz NOT NULL,
    UNIQUE (order_id, name, kind)
);
-- An order's artifacts in the order they were taken (listings read every listed order's).
CREATE INDEX order_artifacts_by_order ON order_artifacts (order_id, kind, created_at, id);
