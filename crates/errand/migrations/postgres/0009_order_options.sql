-- The options an order was created with (a gift, handling days, which rules may be
-- relaxed, whom to e-mail; NULL for none), what placing it relaxed (`concessions`,
-- recorded with the placement attempt first, so that an order adopted after a crash
-- reports the same), why an item was skipped, and the customer e-mails sent
-- (`{"sent": [...], "delivered": bool}`).

ALTER TABLE orders ADD COLUMN options jsonb;
ALTER TABLE orders ADD COLUMN concessions jsonb;
ALTER TABLE orders ADD COLUMN customer_emails jsonb;
ALTER TABLE order_items ADD COLUMN error_type text;
ALTER TABLE placement_attempts ADD COLUMN concessions jsonb;
