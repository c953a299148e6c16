CREATE TABLE orders (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Random and unique: the order_id of the order's stock reservations and the stem of its
    -- payments' idempotency keys, so a fresh orders database never collides with the history
    -- products and payments keep.
    ref               TEXT NOT NULL UNIQUE,
    user_id           INTEGER NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled')),
    shipping_address  TEXT NOT NULL,
    total_cents       INTEGER NOT NULL CHECK (total_cents >= 0),
    currency          TEXT NOT NULL,
    payment_id        INTEGER,
    -- Payment attempts declined so far: the attempt number in the next idempotency key.
    pay_attempt       INTEGER NOT NULL DEFAULT 0,
    -- Unix milliseconds until which a payment call owns the order (0: none); while it does, the
    -- order cannot be cancelled or paid by anyone else.
    paying_until_ms   INTEGER NOT NULL DEFAULT 0,
    -- Set once the stock of a cancelled order has been returned to products.
    stock_released_at TIMESTAMP,
    created_at        TIMESTAMP NOT NULL,
    updated_at        TIMESTAMP NOT NULL
);
CREATE INDEX orders_user ON orders (user_id, id);

CREATE TABLE order_items (
    order_id         INTEGER NOT NULL REFERENCES orders (id),
    line             INTEGER NOT NULL,
    product_id       INTEGER NOT NULL,
    name             TEXT NOT NULL,
    unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, line)
);

-- The change feed: one row per status change (and per new order), written in the transaction
-- that makes the change. Every orders instance polls it by id to push changes to WebSockets.
-- Ids become visible in id order (SQLite serializes writers), so a reader
-- that has seen id N never later finds a committed id below N.
CREATE TABLE order_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    status     TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX order_events_created ON order_events (created_at);
