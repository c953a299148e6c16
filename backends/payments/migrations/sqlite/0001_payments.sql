-- One row per (user, Idempotency-Key): the row is written before the provider is called, so of
-- any number of identical requests, across instances, exactly one charges the card.
CREATE TABLE payments (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    -- SHA-256 of the request fields we may keep (never of the card number or CVC), to tell a
    -- replay from a different request under the same key.
    fingerprint     TEXT NOT NULL,
    order_id        INTEGER NOT NULL,
    amount_cents    INTEGER NOT NULL CHECK (amount_cents > 0),
    currency        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('processing', 'succeeded', 'declined')),
    decline_reason  TEXT,
    card_brand      TEXT NOT NULL,
    card_last4      TEXT NOT NULL CHECK (length(card_last4) = 4),
    provider_ref    TEXT,
    -- Unix milliseconds when the current charge attempt started; 0 when none is running, so a
    -- processing row whose attempt failed or died can be taken over by a replay.
    claimed_at_ms   INTEGER NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX payments_order ON payments (order_id);
