CREATE TABLE products (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    price_cents  INTEGER NOT NULL CHECK (price_cents >= 0),
    category     TEXT NOT NULL,
    -- The CHECK is the last line of defence; reservations use a conditional UPDATE.
    inventory    INTEGER NOT NULL CHECK (inventory >= 0),
    -- Lower-cased, accent-stripped name and description / category (computed by the service),
    -- so search and the category filter behave the same on both engines whatever the collation.
    search_text  TEXT NOT NULL,
    category_key TEXT NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL
);
CREATE INDEX products_category ON products (category_key, id);

-- One row per (order, product): the idempotency key of reserve and release.
CREATE TABLE reservations (
    order_id    TEXT NOT NULL,
    product_id  INTEGER NOT NULL REFERENCES products (id),
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    user_id     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('reserved', 'released')),
    created_at  TIMESTAMP NOT NULL,
    released_at TIMESTAMP,
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX reservations_product ON reservations (product_id);
