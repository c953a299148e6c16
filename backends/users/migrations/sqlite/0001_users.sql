CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    first_name    TEXT NOT NULL,
    last_name     TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('customer', 'admin')),
    created_at    TIMESTAMP NOT NULL
);
-- Emails are stored lower-cased; the unique index is what makes a concurrent double
-- registration fail for all but one.
CREATE UNIQUE INDEX users_email ON users (email);
