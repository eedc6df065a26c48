-- The HTML checkout spans several pages; what the shopper entered so far is kept here.
CREATE TABLE checkout_drafts (
    customer_id INTEGER PRIMARY KEY REFERENCES customers (id),
    checkout    TEXT NOT NULL
);
