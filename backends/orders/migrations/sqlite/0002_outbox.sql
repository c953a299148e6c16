-- The transactional outbox: with a message broker configured, each order event is written here
-- in the transaction of the change it describes, and the relay publishes it and sets sent_at
-- once the broker confirmed it. Ids are visible in id order (SQLite serializes writers), so
-- the relay publishes the events of an order in the order they happened.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    order_id   INTEGER NOT NULL,
    body       TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    sent_at    TIMESTAMP
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- One relay publishes at a time, whichever instance holds this lease (instances share a
-- database), so events leave in id order.
CREATE TABLE outbox_relay (
    name     TEXT PRIMARY KEY,
    holder   TEXT NOT NULL,
    until_ms INTEGER NOT NULL
);
INSERT INTO outbox_relay (name, holder, until_ms) VALUES ('orders', '', 0);

CREATE INDEX orders_pending_created ON orders (created_at) WHERE status = 'pending';
