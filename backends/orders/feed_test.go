package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"
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
