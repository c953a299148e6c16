package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	ev "github.com/archway-gateway/archway/backends/internal/events"
)

func newTestFeed(t *testing.T) (*Feed, *Store) {
	t.Helper()
	st := openStore(t, filepath.Join(t.TempDir(), "orders.db"))
	if _, err := st.Create(context.Background(), newOrder(2)); err != nil { // before the feed: not delivered
		t.Fatal(err)
	}
	f, err := NewFeed(context.Background(), st, slog.New(slog.NewJSONHandler(io.Discard, nil)), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return f, st
}

func TestFeedDeliversByUserAndDropsSlowSubscribers(t *testing.T) {
	ctx := context.Background()
	f, st := newTestFeed(t)
	slow, fast, other := f.Subscribe(2), f.Subscribe(2), f.Subscribe(3)
	o, _ := st.Create(ctx, newOrder(2))
	if err := f.poll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Subscription{slow, fast} {
		if e := <-s.C; e.OrderID != o.ID || e.Status != StatusPending || e.UserID != 2 {
			t.Fatalf("event %+v; want the new order only (not the one before the feed started)", e)
		}
	}
	if len(other.C) != 0 {
		t.Fatal("user 3 got user 2's event")
	}
	// fast keeps reading; slow never does again and falls a full buffer behind.
	for range subscriptionBuffer + 1 {
		if _, err := st.Create(ctx, newOrder(2)); err != nil {
			t.Fatal(err)
		}
		if err := f.poll(ctx); err != nil {
			t.Fatal(err)
		}
		<-fast.C
	}
	n := 0
	for range slow.C { // drains, then ends: the channel was closed
		n++
	}
	if n != subscriptionBuffer || f.Reason(slow) != endSlow {
		t.Fatalf("slow subscriber got %d events, reason %q; want %d and %q", n, f.Reason(slow), subscriptionBuffer, endSlow)
	}
	f.Unsubscribe(slow) // after the feed dropped it: harmless
	f.Unsubscribe(fast)
	f.Unsubscribe(fast)

	// Run ends with ctx and closes what is left; later subscriptions start closed.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.Run(rctx); close(done) }()
	cancel()
	<-done
	if _, open := <-other.C; open || f.Reason(other) != endShutdown {
		t.Fatalf("after shutdown: open %v, reason %q", open, f.Reason(other))
	}
	late := f.Subscribe(2)
	if _, open := <-late.C; open || f.Reason(late) != endShutdown {
		t.Fatal("a subscription after shutdown is open")
	}
}

func TestFeedKick(t *testing.T) {
	f, st := newTestFeed(t) // ticks hourly: only a kick makes it poll
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.Run(ctx)
	sub := f.Subscribe(2)
	o, _ := st.Create(ctx, newOrder(2))
	f.Kick()
	select {
	case e := <-sub.C:
		if e.OrderID != o.ID {
			t.Fatalf("event %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a kick did not make the feed poll")
	}
}

// Without a broker the feed reads the outbox, not the change table: a row only in order_events
// reaches nobody, and an outbox event reaches its user with the fields of its payload, the same
// a broker would have delivered.
func TestFeedTailsTheOutbox(t *testing.T) {
	ctx := context.Background()
	f, st := newTestFeed(t)
	sub := f.Subscribe(2)
	at := time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC)
	if _, err := st.db.Exec(ctx, "INSERT INTO order_events (order_id, user_id, status, created_at) VALUES (?, ?, ?, ?)",
		999, 2, StatusShipped, at); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(ev.OrderChange{OrderID: 998, Seq: 77, Ref: "r", UserID: 2, Status: StatusPaid, Items: []ev.Line{}})
	body, _ := json.Marshal(ev.Envelope{ID: ev.NewID(), Type: ev.OrderPaid, Version: ev.Version, OrderID: 998, OccurredAt: at, Data: data})
	if _, err := st.db.Exec(ctx, "INSERT INTO outbox (event_id, type, order_id, body, created_at) VALUES (?, ?, ?, ?, ?)",
		ev.NewID(), string(ev.OrderPaid), 998, string(body), at); err != nil {
		t.Fatal(err)
	}
	if err := f.poll(ctx); err != nil {
		t.Fatal(err)
	}
	want := Event{ID: 77, OrderID: 998, UserID: 2, Status: StatusPaid, At: at}
	select {
	case e := <-sub.C:
		if e != want {
			t.Fatalf("event %+v, want %+v", e, want)
		}
	default:
		t.Fatal("the outbox event was not delivered")
	}
	if len(sub.C) != 0 {
		t.Fatalf("%d more events; the change-table row must not be delivered", len(sub.C))
	}
}
