package main

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	ev "github.com/archway-gateway/archway/backends/internal/events"
	"github.com/archway-gateway/archway/backends/internal/money"
	"github.com/archway-gateway/archway/backends/internal/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Order statuses.
const (
	StatusPending   = "pending"
	StatusPaid      = "paid"
	StatusShipped   = "shipped"
	StatusDelivered = "delivered"
	StatusCancelled = "cancelled"
)

// Item is one line of an order. UnitPrice is the product's price when the order was placed.
type Item struct {
	ProductID int64       `json:"product_id"`
	Name      string      `json:"name"`
	Quantity  int64       `json:"quantity"`
	UnitPrice money.Cents `json:"unit_price"`
}

// Order is an order as the API shows it.
type Order struct {
	ID              int64       `json:"id"`
	UserID          int64       `json:"user_id"`
	Items           []Item      `json:"items"`
	Total           money.Cents `json:"total"`
	Currency        string      `json:"currency"`
	Status          string      `json:"status"`
	ShippingAddress string      `json:"shipping_address"`
	PaymentID       *int64      `json:"payment_id"`
	CreatedAt       time.Time   `json:"created_at"`
	UpdatedAt       time.Time   `json:"updated_at"`

	// Ref is the order's key towards products and payments; never shown.
	Ref string `json:"-"`
	// PayAttempt numbers the next payment attempt; PayingUntil is when the running one's claim
	// lapses (zero when none runs).
	PayAttempt  int       `json:"-"`
	PayingUntil time.Time `json:"-"`
	// StockReleased is set once a cancelled order's stock has been returned.
	StockReleased bool `json:"-"`
}

// NewOrder is what Create stores.
type NewOrder struct {
	Ref             string
	UserID          int64
	Items           []Item
	ShippingAddress string
	Currency        string
}

// Event is one entry of the change feed: the order's status after a change (or its creation).
type Event struct {
	ID      int64
	OrderID int64
	UserID  int64
	Status  string
	At      time.Time // the order's updated_at
}

// Store errors.
var (
	ErrNotFound = errors.New("order not found")
	// ErrChanged: the order is no longer in the state the change was conditional on (another
	// request changed it, or a payment holds it).
	ErrChanged = errors.New("order changed concurrently")
)

// Store keeps orders and their change feed in SQLite or PostgreSQL. Safe for concurrent use,
// and for several processes sharing one database.
type Store struct {
	db  *sqldb.DB
	now func() time.Time
	// onCommit is called after a transaction that wrote an event committed (the relay's kick).
	// Set before use.
	onCommit func()
}

// OpenStore opens the database at url and applies the orders migrations.
func OpenStore(ctx context.Context, url string) (*Store, error) {
	db, err := sqldb.OpenMigrated(ctx, url, "orders", migrations)
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

// eventsLock serializes change-feed inserts on PostgreSQL (see appendEvent).
var eventsLock = func() int64 {
	h := fnv.New64a()
	h.Write([]byte("archway:orders:events"))
	return int64(h.Sum64())
}()

// appendEvent records a status change in the change feed and its event in the outbox; it must be
// the last statement of its transaction. On PostgreSQL an identity value is taken at insert but
// becomes visible at commit, so two transactions could commit ids out of order and a reader past
// the later id (the WebSocket feed tails the outbox by id) would skip the earlier one for good.
// The transaction-level advisory lock, held from the inserts to the commit, makes ids of both
// tables visible in id order. SQLite serializes writers already.
func (s *Store) appendEvent(ctx context.Context, tx *sqldb.Tx, orderID, userID int64, status, reason string, at time.Time) error {
	if tx.Engine() == sqldb.Postgres {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(?)", eventsLock); err != nil {
			return fmt.Errorf("lock change feed: %w", err)
		}
	}
	var seq int64
	if err := tx.QueryRow(ctx, `INSERT INTO order_events (order_id, user_id, status, created_at) VALUES (?, ?, ?, ?)
		RETURNING id`, orderID, userID, status, at).Scan(&seq); err != nil {
		return fmt.Errorf("record order event: %w", err)
	}
	return s.appendOutbox(ctx, tx, seq, orderID, userID, status, reason, at)
}

// Create stores a new pending order with its items and its first change-feed event.
func (s *Store) Create(ctx context.Context, in NewOrder) (Order, error) {
	now := s.timestamp()
	o := Order{UserID: in.UserID, Items: in.Items, Currency: in.Currency, Status: StatusPending,
		ShippingAddress: in.ShippingAddress, CreatedAt: now, UpdatedAt: now, Ref: in.Ref}
	for _, it := range in.Items {
		o.Total += it.UnitPrice * money.Cents(it.Quantity)
	}
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO orders (ref, user_id, status, shipping_address, total_cents, currency,
				created_at, updated_at) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?) RETURNING id`,
			in.Ref, in.UserID, in.ShippingAddress, int64(o.Total), in.Currency, now, now).Scan(&o.ID); err != nil {
			return fmt.Errorf("insert order: %w", err)
		}
		for i, it := range in.Items {
			if _, err := tx.Exec(ctx, `INSERT INTO order_items (order_id, line, product_id, name, unit_price_cents, quantity)
				VALUES (?, ?, ?, ?, ?, ?)`, o.ID, i+1, it.ProductID, it.Name, int64(it.UnitPrice), it.Quantity); err != nil {
				return fmt.Errorf("insert order item: %w", err)
			}
		}
		return s.appendEvent(ctx, tx, o.ID, in.UserID, StatusPending, "", now)
	})
	if err != nil {
		return Order{}, err
	}
	s.committed()
	return o, nil
}

const orderColumns = `id, ref, user_id, status, shipping_address, total_cents, currency, payment_id, pay_attempt,
	paying_until_ms, stock_released_at, created_at, updated_at`

func scanOrder(row interface{ Scan(...any) error }) (Order, error) {
	var o Order
	var total, payingUntil int64
	var paymentID sql.NullInt64
	var released sql.NullTime
	if err := row.Scan(&o.ID, &o.Ref, &o.UserID, &o.Status, &o.ShippingAddress, &total, &o.Currency, &paymentID,
		&o.PayAttempt, &payingUntil, &released, &o.CreatedAt, &o.UpdatedAt); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Order{}, ErrNotFound
		}
		return Order{}, fmt.Errorf("read order: %w", err)
	}
	o.Total = money.Cents(total)
	if paymentID.Valid {
		o.PaymentID = &paymentID.Int64
	}
	if payingUntil > 0 {
		o.PayingUntil = time.UnixMilli(payingUntil).UTC()
	}
	o.StockReleased = released.Valid
	o.CreatedAt, o.UpdatedAt = o.CreatedAt.UTC(), o.UpdatedAt.UTC()
	return o, nil
}

// Get returns the order with id and its items, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id int64) (Order, error) {
	o, err := scanOrder(s.db.QueryRow(ctx, "SELECT "+orderColumns+" FROM orders WHERE id = ?", id))
	if err != nil {
		return Order{}, err
	}
	orders := []Order{o}
	if err := s.loadItems(ctx, orders); err != nil {
		return Order{}, err
	}
	return orders[0], nil
}

// List returns one page of the user's orders, newest first, and how many orders the user has.
func (s *Store) List(ctx context.Context, userID int64, limit, offset int) ([]Order, int, error) {
	var total int
	if err := s.db.QueryRow(ctx, "SELECT COUNT(*) FROM orders WHERE user_id = ?", userID).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count orders: %w", err)
	}
	rows, err := s.db.Query(ctx, "SELECT "+orderColumns+" FROM orders WHERE user_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
		userID, limit, offset)
	if err != nil {
		return nil, 0, fmt.Errorf("list orders: %w", err)
	}
	defer rows.Close()
	orders := []Order{}
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, 0, err
		}
		orders = append(orders, o)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("list orders: %w", err)
	}
	rows.Close()
	if err := s.loadItems(ctx, orders); err != nil {
		return nil, 0, err
	}
	return orders, total, nil
}

// loadItems fills in the items of orders with one query.
func (s *Store) loadItems(ctx context.Context, orders []Order) error {
	if len(orders) == 0 {
		return nil
	}
	byID := make(map[int64]*Order, len(orders))
	args := make([]any, len(orders))
	for i := range orders {
		orders[i].Items = []Item{}
		byID[orders[i].ID] = &orders[i]
		args[i] = orders[i].ID
	}
	rows, err := s.db.Query(ctx, `SELECT order_id, product_id, name, unit_price_cents, quantity FROM order_items
		WHERE order_id IN (?`+strings.Repeat(", ?", len(orders)-1)+`) ORDER BY order_id, line`, args...)
	if err != nil {
		return fmt.Errorf("read order items: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var orderID, price int64
		var it Item
		if err := rows.Scan(&orderID, &it.ProductID, &it.Name, &price, &it.Quantity); err != nil {
			return fmt.Errorf("read order items: %w", err)
		}
		it.UnitPrice = money.Cents(price)
		o := byID[orderID]
		o.Items = append(o.Items, it)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read order items: %w", err)
	}
	return nil
}

// update runs a conditional UPDATE of one order (query must end in "WHERE id = ? AND ..." and
// args must match) and, when it changed the order's status, appends the event; ErrChanged when
// the condition did not hold. It returns the order as it is afterwards.
func (s *Store) update(ctx context.Context, id int64, newStatus, reason string, query string, args ...any) (Order, error) {
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var userID int64
		var updated time.Time
		err := tx.QueryRow(ctx, query+" RETURNING user_id, updated_at", args...).Scan(&userID, &updated)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrChanged
		}
		if err != nil {
			return fmt.Errorf("update order: %w", err)
		}
		if newStatus == "" {
			return nil
		}
		return s.appendEvent(ctx, tx, id, userID, newStatus, reason, updated)
	})
	if err != nil {
		return Order{}, err
	}
	if newStatus != "" {
		s.committed()
	}
	return s.Get(ctx, id)
}

func (s *Store) nowMillis() int64 { return s.now().UnixMilli() }

// Transition changes the order's status from from to to, with its event, unless the order is no
// longer in from or a payment holds it (ErrChanged).
func (s *Store) Transition(ctx context.Context, id int64, from, to string) (Order, error) {
	return s.update(ctx, id, to, ev.ReasonRequested, `UPDATE orders SET status = ?, updated_at = ?
		WHERE id = ? AND status = ? AND paying_until_ms < ?`, to, s.timestamp(), id, from, s.nowMillis())
}

// ClaimPayment gives a payment call the pending order until now+ttl, so nothing else pays or
// cancels it meanwhile, and returns the attempt number for the idempotency key. ErrChanged when
// the order is not pending or another payment holds it.
func (s *Store) ClaimPayment(ctx context.Context, id int64, ttl time.Duration) (int, error) {
	now := s.nowMillis()
	var attempt int
	err := s.db.QueryRow(ctx, `UPDATE orders SET paying_until_ms = ? WHERE id = ? AND status = 'pending'
		AND paying_until_ms < ? RETURNING pay_attempt`, now+ttl.Milliseconds(), id, now).Scan(&attempt)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrChanged
	}
	if err != nil {
		return 0, fmt.Errorf("claim order for payment: %w", err)
	}
	return attempt, nil
}

// EndPayment gives up the claim of payment attempt; a declined attempt moves the order on to the
// next attempt number, one whose outcome is unknown keeps it (a retry must reuse its key).
func (s *Store) EndPayment(ctx context.Context, id int64, attempt int, declined bool) error {
	next := attempt
	if declined {
		next++
	}
	if _, err := s.db.Exec(ctx, "UPDATE orders SET paying_until_ms = 0, pay_attempt = ? WHERE id = ? AND pay_attempt = ?",
		next, id, attempt); err != nil {
		return fmt.Errorf("end payment: %w", err)
	}
	return nil
}

// MarkPaid records the approved payment of attempt: the order becomes paid, with its event.
func (s *Store) MarkPaid(ctx context.Context, id int64, attempt int, paymentID int64) (Order, error) {
	return s.update(ctx, id, StatusPaid, "", `UPDATE orders SET status = 'paid', payment_id = ?, paying_until_ms = 0,
		updated_at = ? WHERE id = ? AND status = 'pending' AND pay_attempt = ?`, paymentID, s.timestamp(), id, attempt)
}

// MarkStockReleased records that a cancelled order's stock is back in products.
func (s *Store) MarkStockReleased(ctx context.Context, id int64) error {
	if _, err := s.db.Exec(ctx, "UPDATE orders SET stock_released_at = ? WHERE id = ? AND status = 'cancelled'",
		s.timestamp(), id); err != nil {
		return fmt.Errorf("mark stock released: %w", err)
	}
	return nil
}

// LastEventID returns the newest change-feed id (0 when empty): where a new reader starts.
func (s *Store) LastEventID(ctx context.Context) (int64, error) {
	var id sql.NullInt64
	if err := s.db.QueryRow(ctx, "SELECT MAX(id) FROM order_events").Scan(&id); err != nil {
		return 0, fmt.Errorf("read change feed: %w", err)
	}
	return id.Int64, nil
}

// Events returns up to limit change-feed events after id, oldest first.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]Event, error) {
	rows, err := s.db.Query(ctx, "SELECT id, order_id, user_id, status, created_at FROM order_events WHERE id > ? ORDER BY id LIMIT ?",
		after, limit)
	if err != nil {
		return nil, fmt.Errorf("read change feed: %w", err)
	}
	defer rows.Close()
	var events []Event
	for rows.Next() {
		var e Event
		if err := rows.Scan(&e.ID, &e.OrderID, &e.UserID, &e.Status, &e.At); err != nil {
			return nil, fmt.Errorf("read change feed: %w", err)
		}
		e.At = e.At.UTC()
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read change feed: %w", err)
	}
	return events, nil
}

// PruneEvents deletes change-feed events older than before and returns how many.
func (s *Store) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.Exec(ctx, "DELETE FROM order_events WHERE created_at < ?", before.UTC())
	if err != nil {
		return 0, fmt.Errorf("prune change feed: %w", err)
	}
	return res.RowsAffected()
}
