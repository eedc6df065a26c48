-- Orders remember the buyer's gift option (a gift receipt: no prices on the packing
-- slip) and purchase-order number.
ALTER TABLE orders ADD COLUMN gift INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN po_number TEXT;
