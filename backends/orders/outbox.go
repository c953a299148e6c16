package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	ev "github.com/archway-gateway/archway/backends/internal/events"
	"github.com/archway-gateway/archway/backends/internal/sqldb"
	"github.com/archway-gateway/archway/backends/internal/telemetry"
)

// Relay defaults.
const (
	relayBatch      = 100
	relayPoll       = 500 * time.Millisecond // finds events another instance wrote
	relayLease      = 15 * time.Second
	relayTimeout    = 10 * time.Second // one batch: publish and confirms
	relayBackoffMax = 5 * time.Second
	outboxRetention = 24 * time.Hour // sent events are kept this long, for inspection
	expirySweepMax  = time.Minute
)

// OnCommit makes the store call kick after each commit that wrote an event to the outbox.
// Call it before the store is used.
func (s *Store) OnCommit(kick func()) { s.onCommit = kick }

func (s *Store) committed() {
	if s.onCommit != nil {
		s.onCommit()
	}
}

// appendOutbox writes the event's message (envelope and payload) in the transaction of the
// change. seq is the change's id in order_events.
func (s *Store) appendOutbox(ctx context.Context, tx *sqldb.Tx, seq, orderID, userID int64, status, reason string, at time.Time) error {
	typ, err := ev.TypeForStatus(status)
	if err != nil {
		return err
	}
	if typ != ev.OrderCancelled {
		reason = ""
	}
	change := ev.OrderChange{OrderID: orderID, Seq: seq, UserID: userID, Status: status, Reason: reason, Items: []ev.Line{}}
	if err := tx.QueryRow(ctx, "SELECT ref FROM orders WHERE id = ?", orderID).Scan(&change.Ref); err != nil {
		return fmt.Errorf("read order for its event: %w", err)
	}
	rows, err := tx.Query(ctx, "SELECT product_id, quantity FROM order_items WHERE order_id = ? ORDER BY line", orderID)
	if err != nil {
		return fmt.Errorf("read order items for its event: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var l ev.Line
		if err := rows.Scan(&l.ProductID, &l.Quantity); err != nil {
			return fmt.Errorf("read order items for its event: %w", err)
		}
		change.Items = append(change.Items, l)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read order items for its event: %w", err)
	}
	rows.Close()
	data, err := json.Marshal(change)
	if err != nil {
		return err
	}
	env := ev.Envelope{ID: ev.NewID(), Type: typ, Version: ev.Version, OrderID: orderID, OccurredAt: at, Traceparent: telemetry.Traceparent(ctx), Data: data}
	body, err := json.Marshal(env)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO outbox (event_id, type, order_id, body, created_at) VALUES (?, ?, ?, ?, ?)",
		env.ID, string(typ), orderID, string(body), at); err != nil {
		return fmt.Errorf("write outbox: %w", err)
	}
	return nil
}

// outboxEntry is one unsent outbox row.
type outboxEntry struct {
	id  int64
	msg ev.Message
}

// ClaimRelay takes or renews the relay lease for holder until now+ttl; false when another live
// holder has it.
func (s *Store) ClaimRelay(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	now := s.nowMillis()
	res, err := s.db.Exec(ctx, `UPDATE outbox_relay SET holder = ?, until_ms = ? WHERE name = 'orders'
		AND (holder = ? OR until_ms < ?)`, holder, now+ttl.Milliseconds(), holder, now)
	if err != nil {
		return false, fmt.Errorf("claim outbox relay: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claim outbox relay: %w", err)
	}
	return n == 1, nil
}

// Unsent returns up to limit unsent outbox events, oldest first.
func (s *Store) Unsent(ctx context.Context, limit int) ([]outboxEntry, error) {
	return s.readOutbox(ctx, `SELECT id, event_id, type, order_id, body, created_at FROM outbox
		WHERE sent_at IS NULL ORDER BY id LIMIT ?`, limit)
}

// OutboxAfter returns up to limit outbox events after id, sent or not, oldest first: what a
// reader tailing the outbox (the WebSocket feed without a broker) has not seen yet.
func (s *Store) OutboxAfter(ctx context.Context, id int64, limit int) ([]outboxEntry, error) {
	return s.readOutbox(ctx, `SELECT id, event_id, type, order_id, body, created_at FROM outbox
		WHERE id > ? ORDER BY id LIMIT ?`, id, limit)
}

// LastOutboxID returns the newest outbox id (0 when empty): where a new tail starts.
func (s *Store) LastOutboxID(ctx context.Context) (int64, error) {
	var id sql.NullInt64
	if err := s.db.QueryRow(ctx, "SELECT MAX(id) FROM outbox").Scan(&id); err != nil {
		return 0, fmt.Errorf("read outbox: %w", err)
	}
	return id.Int64, nil
}

func (s *Store) readOutbox(ctx context.Context, query string, args ...any) ([]outboxEntry, error) {
	rows, err := s.db.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	defer rows.Close()
	var out []outboxEntry
	for rows.Next() {
		var e outboxEntry
		var typ, body string
		if err := rows.Scan(&e.id, &e.msg.ID, &typ, &e.msg.OrderID, &body, &e.msg.At); err != nil {
			return nil, fmt.Errorf("read outbox: %w", err)
		}
		e.msg.Type, e.msg.Body, e.msg.At = ev.Type(typ), []byte(body), e.msg.At.UTC()
		// The message's traceparent header repeats the envelope's, for consumers (and broker
		// tooling) that read headers without decoding the body.
		var trace struct {
			Traceparent string `json:"traceparent"`
		}
		if json.Unmarshal(e.msg.Body, &trace) == nil {
			e.msg.Traceparent = trace.Traceparent
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return out, nil
}

// MarkSent records that the outbox events with ids first..last were confirmed by the broker.
func (s *Store) MarkSent(ctx context.Context, first, last int64) error {
	if _, err := s.db.Exec(ctx, "UPDATE outbox SET sent_at = ? WHERE id >= ? AND id <= ? AND sent_at IS NULL",
		s.timestamp(), first, last); err != nil {
		return fmt.Errorf("mark outbox events sent: %w", err)
	}
	return nil
}

// OutboxBacklog returns how many events wait in the outbox and when the oldest was written
// (zero when none waits).
func (s *Store) OutboxBacklog(ctx context.Context) (int64, time.Time, error) {
	var n int64
	var oldest sql.NullTime
	// MIN over a timestamp column comes back as text from SQLite; the oldest row by id is the
	// oldest event, and the partial index answers both.
	if err := s.db.QueryRow(ctx, "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").Scan(&n); err != nil {
		return 0, time.Time{}, fmt.Errorf("read outbox backlog: %w", err)
	}
	if n == 0 {
		return 0, time.Time{}, nil
	}
	err := s.db.QueryRow(ctx, "SELECT created_at FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT 1").Scan(&oldest)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, fmt.Errorf("read outbox backlog: %w", err)
	}
	return n, oldest.Time, nil
}

// PruneOutbox deletes events sent before before and returns how many.
func (s *Store) PruneOutbox(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.Exec(ctx, "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?", before.UTC())
	if err != nil {
		return 0, fmt.Errorf("prune outbox: %w", err)
	}
	return res.RowsAffected()
}

// ExpirePending cancels up to limit pending orders created before before that no payment holds,
// each with its order.cancelled event (reason expired), and returns them.
func (s *Store) ExpirePending(ctx context.Context, before time.Time, limit int) ([]Order, error) {
	before = before.UTC()
	rows, err := s.db.Query(ctx, `SELECT id FROM orders WHERE status = 'pending' AND created_at < ?
		AND paying_until_ms < ? ORDER BY created_at LIMIT ?`, before, s.nowMillis(), limit)
	if err != nil {
		return nil, fmt.Errorf("find expired orders: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("find expired orders: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find expired orders: %w", err)
	}
	var expired []Order
	for _, id := range ids {
		// Conditional again: a payment or a cancellation may have come first.
		o, err := s.update(ctx, id, StatusCancelled, ev.ReasonExpired, `UPDATE orders SET status = 'cancelled',
			updated_at = ? WHERE id = ? AND status = 'pending' AND paying_until_ms < ? AND created_at < ?`,
			s.timestamp(), id, s.nowMillis(), before)
		if errors.Is(err, ErrChanged) {
			continue
		}
		if err != nil {
			return expired, err
		}
		expired = append(expired, o)
	}
	return expired, nil
}

// publisher sends events to the broker and says how many of the first were confirmed.
type publisher interface {
	Publish(ctx context.Context, msgs []ev.Message) (int, error)
	Close()
}

var _ publisher = (*ev.Publisher)(nil)

// Relay publishes the outbox: oldest first, a batch at a time, marking events sent only once
// the broker confirmed them. Only the instance holding the relay lease publishes, so events
// leave in the order they were written. Run it once, in a goroutine the caller owns; Kick is
// safe from any goroutine.
type Relay struct {
	store     *Store
	pub       publisher
	log       *slog.Logger
	holder    string
	kick      chan struct{}
	published prometheus.Counter
	poll      time.Duration
}

// NewRelay returns a relay for store's outbox; holder names this instance in the lease.
func NewRelay(store *Store, pub publisher, log *slog.Logger, holder string) *Relay {
	return &Relay{store: store, pub: pub, log: log, holder: holder, kick: make(chan struct{}, 1), poll: relayPoll,
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "orders_outbox_published_events_total",
			Help: "Order events this instance relayed from the outbox: confirmed by the broker, or without one taken by every service they are pushed to."})}
}

// Kick asks Run to publish now (an event was just committed).
func (r *Relay) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends. While the broker is unreachable events wait in the outbox; the
// relay retries with a backoff from the poll interval doubling to 5 s.
func (r *Relay) Run(ctx context.Context) {
	defer r.pub.Close()
	wait := r.poll
	timer := time.NewTimer(0)
	defer timer.Stop()
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-prune.C:
			if _, err := r.store.PruneOutbox(ctx, time.Now().Add(-outboxRetention)); err != nil {
				r.log.WarnContext(ctx, "pruning the outbox failed", "error", err.Error())
			}
			continue
		case <-timer.C:
		case <-r.kick:
			if failing {
				continue // the backoff timer decides when to try again
			}
			timer.Stop()
		}
		more, err := r.relayOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				r.log.ErrorContext(ctx, "publishing order events failed; they wait in the outbox", "error", err.Error())
			}
			failing = true
			wait = min(max(wait*2, r.poll), relayBackoffMax)
		default:
			if failing {
				r.log.InfoContext(ctx, "publishing order events works again")
			}
			failing, wait = false, r.poll
			if more {
				wait = 0
			}
		}
		timer.Reset(wait)
	}
}

// relayOnce publishes one batch; more is true when a full batch went out (more may wait).
func (r *Relay) relayOnce(ctx context.Context) (more bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, relayTimeout)
	defer cancel()
	held, err := r.store.ClaimRelay(ctx, r.holder, relayLease)
	if err != nil || !held {
		return false, err
	}
	batch, err := r.store.Unsent(ctx, relayBatch)
	if err != nil || len(batch) == 0 {
		return false, err
	}
	msgs := make([]ev.Message, len(batch))
	for i, e := range batch {
		msgs[i] = e.msg
	}
	n, pubErr := r.pub.Publish(ctx, msgs)
	if n > 0 {
		// Marked even when ctx ended: the broker has these, and publishing them again is only
		// a duplicate, but marking is what keeps the next batch from repeating them.
		mctx, mcancel := context.WithTimeout(context.Background(), relayTimeout)
		defer mcancel()
		if err := r.store.MarkSent(mctx, batch[0].id, batch[n-1].id); err != nil {
			return false, errors.Join(pubErr, err)
		}
		r.published.Add(float64(n))
	}
	return pubErr == nil && n == relayBatch, pubErr
}

// registerOutboxMetrics exports the outbox backlog, read from the database at scrape time (so
// every instance reports it, whichever holds the relay lease).
func registerOutboxMetrics(reg prometheus.Registerer, store *Store, relay *Relay) {
	backlog := func() (int64, time.Time, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, oldest, err := store.OutboxBacklog(ctx)
		return n, oldest, err == nil
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orders_outbox_pending_events",
			Help: "Order events written to the outbox and not yet confirmed by the broker."},
			func() float64 {
				n, _, ok := backlog()
				if !ok {
					return math.NaN()
				}
				return float64(n)
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orders_outbox_lag_seconds",
			Help: "Age of the oldest order event waiting in the outbox (0 when none waits)."},
			func() float64 {
				n, oldest, ok := backlog()
				switch {
				case !ok:
					return math.NaN()
				case n == 0:
					return 0
				}
				return max(0, time.Since(oldest).Seconds())
			}),
	)
	if relay != nil {
		reg.MustRegister(relay.published)
	} else {
		// Exported without a broker too, so dashboards and alerts find the series.
		reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "orders_outbox_published_events_total",
			Help: "Order events this instance relayed from the outbox: confirmed by the broker, or without one taken by every service they are pushed to."}))
	}
}
