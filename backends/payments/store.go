package main

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/archway-gateway/archway/backends/internal/money"
	"github.com/archway-gateway/archway/backends/internal/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Payment statuses. processing is transient: the row exists before the provider is called.
const (
	StatusProcessing = "processing"
	StatusSucceeded  = "succeeded"
	StatusDeclined   = "declined"
)

// Payment is one charge attempt as the API shows it. Only the card's brand and last four digits
// are kept.
type Payment struct {
	ID            int64       `json:"id"`
	OrderID       int64       `json:"order_id"`
	Amount        money.Cents `json:"amount"`
	Currency      string      `json:"currency"`
	Status        string      `json:"status"`
	DeclineReason *string     `json:"decline_reason"`
	CardBrand     string      `json:"card_brand"`
	CardLast4     string      `json:"card_last4"`
	CreatedAt     time.Time   `json:"created_at"`

	UserID      int64  `json:"-"`
	fingerprint string // of the request that created it
}

// NewPayment is what Begin records.
type NewPayment struct {
	UserID         int64
	IdempotencyKey string
	Fingerprint    string
	OrderID        int64
	Amount         money.Cents
	Currency       string
	CardBrand      string
	CardLast4      string
}

// Store errors.
var (
	ErrNotFound = errors.New("payment not found")
	// ErrKeyReused: the user's Idempotency-Key already belongs to a request with another body.
	ErrKeyReused = errors.New("idempotency key reused with a different request")
)

// Store keeps payments in SQLite or PostgreSQL. Safe for concurrent use, and for several
// processes sharing one database.
type Store struct {
	db  *sqldb.DB
	now func() time.Time
}

// OpenStore opens the database at url and applies the payments migrations.
func OpenStore(ctx context.Context, url string) (*Store, error) {
	db, err := sqldb.OpenMigrated(ctx, url, "payments", migrations)
	if err != nil {
		return nil, err
	}
	return &Store{db: db, now: time.Now}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks the database for /health.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

func (s *Store) timestamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

const paymentColumns = `id, user_id, fingerprint, order_id, amount_cents, currency, status, decline_reason,
	card_brand, card_last4, created_at`

func scanPayment(row interface{ Scan(...any) error }) (Payment, error) {
	var p Payment
	var amount int64
	var reason sql.NullString
	if err := row.Scan(&p.ID, &p.UserID, &p.fingerprint, &p.OrderID, &amount, &p.Currency, &p.Status, &reason,
		&p.CardBrand, &p.CardLast4, &p.CreatedAt); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Payment{}, ErrNotFound
		}
		return Payment{}, fmt.Errorf("read payment: %w", err)
	}
	p.Amount = money.Cents(amount)
	if reason.Valid {
		p.DeclineReason = &reason.String
	}
	p.CreatedAt = p.CreatedAt.UTC()
	return p, nil
}

// Begin records a new payment as processing and claims its charge for the caller (claimed is
// true), or, when the user's idempotency key is taken, returns the payment recorded under it
// (claimed false): ErrKeyReused when that payment came from a request with another
// fingerprint. Of any number of concurrent Begins with one key, on any number of instances,
// exactly one claims.
func (s *Store) Begin(ctx context.Context, in NewPayment) (p Payment, claimed bool, err error) {
	now := s.timestamp()
	var id int64
	err = s.db.QueryRow(ctx, `INSERT INTO payments (user_id, idempotency_key, fingerprint, order_id, amount_cents,
			currency, status, card_brand, card_last4, claimed_at_ms, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, 'processing', ?, ?, ?, ?, ?)
		ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING id`,
		in.UserID, in.IdempotencyKey, in.Fingerprint, in.OrderID, int64(in.Amount), in.Currency,
		in.CardBrand, in.CardLast4, now.UnixMilli(), now, now).Scan(&id)
	switch {
	case err == nil:
		return Payment{ID: id, UserID: in.UserID, fingerprint: in.Fingerprint, OrderID: in.OrderID, Amount: in.Amount,
			Currency: in.Currency, Status: StatusProcessing, CardBrand: in.CardBrand, CardLast4: in.CardLast4,
			CreatedAt: now}, true, nil
	case !errors.Is(err, sql.ErrNoRows):
		return Payment{}, false, fmt.Errorf("record payment: %w", err)
	}
	p, err = scanPayment(s.db.QueryRow(ctx, "SELECT "+paymentColumns+
		" FROM payments WHERE user_id = ? AND idempotency_key = ?", in.UserID, in.IdempotencyKey))
	if err != nil {
		return Payment{}, false, err
	}
	if p.fingerprint != in.Fingerprint {
		return Payment{}, false, ErrKeyReused
	}
	return p, false, nil
}

// Claim takes over the charge of a payment still processing whose attempt is not running: it
// was released by Unclaim, or started before staleBefore (its process died). It reports whether
// the caller now owns the charge.
func (s *Store) Claim(ctx context.Context, id int64, staleBefore time.Time) (bool, error) {
	res, err := s.db.Exec(ctx, `UPDATE payments SET claimed_at_ms = ? WHERE id = ? AND status = 'processing'
		AND claimed_at_ms < ?`, s.now().UnixMilli(), id, staleBefore.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("claim payment: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claim payment: %w", err)
	}
	return n == 1, nil
}

// Unclaim gives up the charge of a processing payment whose outcome is unknown (the provider
// failed), so the next identical request retries it at once under the same provider key.
func (s *Store) Unclaim(ctx context.Context, id int64) error {
	if _, err := s.db.Exec(ctx, "UPDATE payments SET claimed_at_ms = 0 WHERE id = ? AND status = 'processing'", id); err != nil {
		return fmt.Errorf("unclaim payment: %w", err)
	}
	return nil
}

// Complete records the provider's outcome of a processing payment and returns the payment. A
// payment completed already keeps its first outcome, which is returned.
func (s *Store) Complete(ctx context.Context, id int64, out Outcome) (Payment, error) {
	status := StatusSucceeded
	var reason any
	if !out.Approved {
		status, reason = StatusDeclined, out.DeclineReason
	}
	p, err := scanPayment(s.db.QueryRow(ctx, `UPDATE payments SET status = ?, decline_reason = ?, provider_ref = ?,
		claimed_at_ms = 0, updated_at = ? WHERE id = ? AND status = 'processing' RETURNING `+paymentColumns,
		status, reason, out.Reference, s.timestamp(), id))
	if errors.Is(err, ErrNotFound) {
		return s.Get(ctx, id)
	}
	return p, err
}

// Get returns the payment with id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id int64) (Payment, error) {
	return scanPayment(s.db.QueryRow(ctx, "SELECT "+paymentColumns+" FROM payments WHERE id = ?", id))
}
