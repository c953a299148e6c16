-- Ids of the order events a consumer of this service applied, written in the transaction of the
-- work, so a redelivered event is recognised and applied once.
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    processed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
