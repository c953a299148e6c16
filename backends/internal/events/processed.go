package events

import (
	"context"
	"fmt"
	"time"

	"github.com/archway-gateway/archway/backends/internal/sqldb"
)

// ProcessedTableSQL is the table a consuming service adds to its migrations (the same statement
// on SQLite and PostgreSQL): the ids of the events each of its consumers applied.
const ProcessedTableSQL = `CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    processed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (consumer, event_id)
);`

// Once applies an event at most once per consumer: in one transaction it records eventID in
// processed_events and runs apply. When the id is already recorded (a redelivery of an event
// whose work committed) nothing runs and applied is false. The caller acks after Once returns.
func Once(ctx context.Context, db *sqldb.DB, consumer, eventID string, apply func(tx *sqldb.Tx) error) (applied bool, err error) {
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		// On PostgreSQL a concurrent duplicate waits here on the primary key until the first
		// commits, then does nothing.
		res, err := tx.Exec(ctx, `INSERT INTO processed_events (consumer, event_id, processed_at) VALUES (?, ?, ?)
			ON CONFLICT (consumer, event_id) DO NOTHING`, consumer, eventID, time.Now().UTC())
		if err != nil {
			return fmt.Errorf("record processed event: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("record processed event: %w", err)
		}
		if n == 0 {
			return nil
		}
		applied = true
		return apply(tx)
	})
	if err != nil {
		return false, err
	}
	return applied, nil
}
