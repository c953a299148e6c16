package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/archway-gateway/archway/backends/internal/config"
	ev "github.com/archway-gateway/archway/backends/internal/events"
	"github.com/archway-gateway/archway/backends/internal/sqldb"
)

// ReleaseQueue is the durable queue of products' reservation-release consumer.
const ReleaseQueue = "products.release-reservations"

// brokerSettings are products' flags for order events.
type brokerSettings struct {
	url           string
	prefetch      int
	maxDeliveries int
	// pushSecret: order events pushed by orders without a broker are taken on ev.PushPath.
	pushSecret string
}

func (b *brokerSettings) register(fs *config.FlagSet) {
	fs.StringVar(&b.url, "amqp-url", "AMQP_URL", "",
		"RabbitMQ URL (amqp://user:password@host:5672/); when set, the stock reserved by an order that is cancelled or expires "+
			"unpaid is released on its order.cancelled event")
	fs.IntVar(&b.prefetch, "events-prefetch", "EVENTS_PREFETCH", ev.DefaultPrefetch,
		"with -amqp-url: unacknowledged order events in flight to this instance")
	fs.IntVar(&b.maxDeliveries, "events-max-deliveries", "EVENTS_MAX_DELIVERIES", ev.DefaultMaxDeliveries,
		"with -amqp-url: deliveries of an event that keeps failing before it goes to the dead-letter queue "+ReleaseQueue+ev.DeadLetterSuffix)
	fs.StringVar(&b.pushSecret, "events-secret", "EVENTS_SECRET", "",
		"order events the orders service pushes without a broker are taken on POST "+ev.PushPath+" when signed with this secret "+
			"(at least 32 bytes; orders needs the same), and cancelled and expired orders release their stock; empty: that endpoint is off (404)")
}

func (b *brokerSettings) validate() error {
	if err := ev.ValidateSecret(b.pushSecret); err != nil {
		return err
	}
	switch {
	case b.url == "":
		return nil
	case b.prefetch < 1 || b.prefetch > 10_000:
		return fmt.Errorf("events prefetch %d is outside 1..10000", b.prefetch)
	case b.maxDeliveries < 1 || b.maxDeliveries > 1000:
		return fmt.Errorf("events max deliveries %d is outside 1..1000", b.maxDeliveries)
	}
	return ev.ValidateURL(b.url)
}

// newReleaseConsumer returns the consumer that releases the reservations of cancelled orders.
func newReleaseConsumer(store *Store, b brokerSettings, log *slog.Logger) (*ev.Consumer, error) {
	return ev.NewConsumer(ev.ConsumerConfig{URL: b.url, Queue: ReleaseQueue, Bindings: []string{string(ev.OrderCancelled)},
		Prefetch: b.prefetch, MaxDeliveries: b.maxDeliveries, Log: log}, store.HandleOrderEvent)
}

// HandleOrderEvent applies an order.cancelled event: every line the order still holds goes
// back to stock, once, in the transaction that records the event as processed.
func (s *Store) HandleOrderEvent(ctx context.Context, e ev.Envelope) error {
	if e.Type != ev.OrderCancelled {
		return nil // not bound; nothing to do for other types
	}
	c, err := e.OrderChange()
	if err != nil {
		return err
	}
	if c.Ref == "" {
		return fmt.Errorf("%w: event %s: order.cancelled without the order's ref", ev.ErrPermanent, e.ID)
	}
	_, err = ev.Once(ctx, s.db, ReleaseQueue, e.ID, func(tx *sqldb.Tx) error {
		_, err := s.releaseOrder(ctx, tx, c.Ref)
		return err
	})
	return err
}

// releaseOrder returns to stock every line the order ref still holds and returns how many lines
// it released. Lines released before (by the orders service's own call) are left alone.
func (s *Store) releaseOrder(ctx context.Context, tx *sqldb.Tx, ref string) (int, error) {
	rows, err := tx.Query(ctx, "SELECT product_id, quantity FROM reservations WHERE order_id = ? AND status = 'reserved' ORDER BY product_id", ref)
	if err != nil {
		return 0, fmt.Errorf("read reservations of order %s: %w", ref, err)
	}
	type line struct{ product, quantity int64 }
	var lines []line
	for rows.Next() {
		var l line
		if err := rows.Scan(&l.product, &l.quantity); err != nil {
			rows.Close()
			return 0, fmt.Errorf("read reservations of order %s: %w", ref, err)
		}
		lines = append(lines, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read reservations of order %s: %w", ref, err)
	}
	now := s.timestamp()
	released := 0
	for _, l := range lines {
		upd, err := tx.Exec(ctx, `UPDATE reservations SET status = 'released', released_at = ?
			WHERE order_id = ? AND product_id = ? AND status = 'reserved'`, now, ref, l.product)
		if err != nil {
			return 0, fmt.Errorf("release reservation: %w", err)
		}
		if n, err := upd.RowsAffected(); err != nil {
			return 0, fmt.Errorf("release reservation: %w", err)
		} else if n == 0 {
			continue // released concurrently by the API
		}
		if _, err := tx.Exec(ctx, "UPDATE products SET inventory = inventory + ?, updated_at = ? WHERE id = ?",
			l.quantity, now, l.product); err != nil {
			return 0, fmt.Errorf("return stock: %w", err)
		}
		released++
	}
	return released, nil
}
