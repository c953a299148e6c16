package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/archway-gateway/archway/backends/internal/money"
	"github.com/archway-gateway/archway/backends/internal/sqldb/sqldbtest"
)

func openStore(t testing.TB, url string) *Store {
	t.Helper()
	st, err := OpenStore(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newOrder(user int64) NewOrder {
	return NewOrder{Ref: newRef(), UserID: user, ShippingAddress: "Calle Mayor 1\nMadrid", Currency: "USD", Items: []Item{
		{ProductID: 1, Name: "Laptop Gaming", Quantity: 2, UnitPrice: 1299_99},
		{ProductID: 3, Name: "Auriculares", Quantity: 1, UnitPrice: 199_99},
	}}
}

func events(t *testing.T, st *Store, after int64) []Event {
	t.Helper()
	evs, err := st.Events(context.Background(), after, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestStoreContract runs the same store behaviour on SQLite and on a real PostgreSQL.
func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	sqldbtest.ForEachEngine(t, func(t *testing.T, newURL sqldbtest.NewURL) {
		t.Run("create, get, list newest first", func(t *testing.T) {
			st := openStore(t, newURL(t))
			var ids []int64
			for range 3 {
				o, err := st.Create(ctx, newOrder(2))
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, o.ID)
			}
			if _, err := st.Create(ctx, newOrder(3)); err != nil {
				t.Fatal(err)
			}
			o, err := st.Get(ctx, ids[0])
			if err != nil || o.Total != 2799_97 || o.Total.String() != "2799.97" || o.Status != StatusPending || len(o.Items) != 2 ||
				o.Items[0] != newOrder(2).Items[0] || o.Items[1] != newOrder(2).Items[1] || o.UserID != 2 || o.PaymentID != nil ||
				o.ShippingAddress != "Calle Mayor 1\nMadrid" || o.Ref == "" || !o.CreatedAt.Equal(o.UpdatedAt) {
				t.Fatalf("Get = %+v, %v", o, err)
			}
			page, total, err := st.List(ctx, 2, 2, 0)
			if err != nil || total != 3 || len(page) != 2 || page[0].ID != ids[2] || page[1].ID != ids[1] || len(page[0].Items) != 2 {
				t.Fatalf("List page 1 = %d orders, total %d, %v", len(page), total, err)
			}
			page, _, _ = st.List(ctx, 2, 2, 2)
			if len(page) != 1 || page[0].ID != ids[0] {
				t.Fatalf("List page 2 = %+v", page)
			}
			if page, total, _ := st.List(ctx, 99, 20, 0); len(page) != 0 || total != 0 || page == nil {
				t.Fatalf("List of a user without orders = %#v, %d; want an empty slice", page, total)
			}
			if _, err := st.Get(ctx, 999); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get(999): %v", err)
			}
			// Every creation is on the change feed, with the order's user.
			evs := events(t, st, 0)
			if len(evs) != 4 || evs[0].OrderID != ids[0] || evs[0].Status != StatusPending || evs[3].UserID != 3 {
				t.Fatalf("events = %+v", evs)
			}
		})

		t.Run("transitions are conditional and recorded", func(t *testing.T) {
			st := openStore(t, newURL(t))
			o, _ := st.Create(ctx, newOrder(2))
			last, _ := st.LastEventID(ctx)
			if _, err := st.Transition(ctx, o.ID, StatusPaid, StatusShipped); !errors.Is(err, ErrChanged) {
				t.Fatalf("transition from a status the order is not in: %v", err)
			}
			paid, err := st.Transition(ctx, o.ID, StatusPending, StatusPaid)
			if err != nil || paid.Status != StatusPaid || !paid.UpdatedAt.After(o.UpdatedAt) && !paid.UpdatedAt.Equal(o.UpdatedAt) {
				t.Fatalf("Transition = %+v, %v", paid, err)
			}
			if _, err := st.Transition(ctx, o.ID, StatusPending, StatusCancelled); !errors.Is(err, ErrChanged) {
				t.Fatalf("second transition from pending: %v", err)
			}
			evs := events(t, st, last)
			if len(evs) != 1 || evs[0].Status != StatusPaid || evs[0].OrderID != o.ID || !evs[0].At.Equal(paid.UpdatedAt) {
				t.Fatalf("events after the transition = %+v; want one paid event at %v", evs, paid.UpdatedAt)
			}
		})

		t.Run("payment claims", func(t *testing.T) {
			st := openStore(t, newURL(t))
			o, _ := st.Create(ctx, newOrder(2))
			attempt, err := st.ClaimPayment(ctx, o.ID, time.Minute)
			if err != nil || attempt != 0 {
				t.Fatalf("ClaimPayment = %d, %v", attempt, err)
			}
			if _, err := st.ClaimPayment(ctx, o.ID, time.Minute); !errors.Is(err, ErrChanged) {
				t.Fatalf("second claim: %v", err)
			}
			if _, err := st.Transition(ctx, o.ID, StatusPending, StatusCancelled); !errors.Is(err, ErrChanged) {
				t.Fatalf("cancel during a payment: %v", err)
			}
			// A declined attempt moves on to the next key; an unknown outcome keeps it.
			if err := st.EndPayment(ctx, o.ID, attempt, true); err != nil {
				t.Fatal(err)
			}
			if attempt, err = st.ClaimPayment(ctx, o.ID, time.Minute); err != nil || attempt != 1 {
				t.Fatalf("claim after a decline = %d, %v; want attempt 1", attempt, err)
			}
			if err := st.EndPayment(ctx, o.ID, attempt, false); err != nil {
				t.Fatal(err)
			}
			if attempt, err = st.ClaimPayment(ctx, o.ID, time.Minute); err != nil || attempt != 1 {
				t.Fatalf("claim after an unknown outcome = %d, %v; want attempt 1 again", attempt, err)
			}
			if _, err := st.MarkPaid(ctx, o.ID, 0, 77); !errors.Is(err, ErrChanged) {
				t.Fatalf("MarkPaid for a stale attempt: %v", err)
			}
			paid, err := st.MarkPaid(ctx, o.ID, attempt, 77)
			if err != nil || paid.Status != StatusPaid || paid.PaymentID == nil || *paid.PaymentID != 77 || !paid.PayingUntil.IsZero() {
				t.Fatalf("MarkPaid = %+v, %v", paid, err)
			}
			// A lapsed claim (its instance died) no longer blocks the order.
			o2, _ := st.Create(ctx, newOrder(2))
			if _, err := st.ClaimPayment(ctx, o2.ID, -time.Second); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Transition(ctx, o2.ID, StatusPending, StatusCancelled); err != nil {
				t.Fatalf("cancel after a lapsed claim: %v", err)
			}
			if c, _ := st.Get(ctx, o2.ID); c.StockReleased {
				t.Fatal("a fresh cancellation claims its stock is back")
			}
			if err := st.MarkStockReleased(ctx, o2.ID); err != nil {
				t.Fatal(err)
			}
			if c, _ := st.Get(ctx, o2.ID); !c.StockReleased {
				t.Fatal("MarkStockReleased did not stick")
			}
		})

		t.Run("a reader following the feed during concurrent writes on two handles misses nothing", func(t *testing.T) {
			url := newURL(t)
			stores := []*Store{openStore(t, url), openStore(t, url)}
			reader := openStore(t, url)
			const writers, perWriter = 8, 15
			done := make(chan struct{})
			seen := map[int64]int{}
			var readErr error
			var rwg sync.WaitGroup
			rwg.Go(func() {
				var cursor int64
				for {
					finished := false
					select {
					case <-done:
						finished = true
					default:
					}
					evs, err := reader.Events(ctx, cursor, 7) // small batches: many reads mid-write
					if err != nil {
						readErr = err
						return
					}
					for _, e := range evs {
						seen[e.ID]++
						cursor = e.ID
					}
					if finished && len(evs) == 0 {
						return
					}
				}
			})
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for range perWriter {
						o, err := stores[w%2].Create(ctx, newOrder(int64(w)))
						if err == nil {
							_, err = stores[w%2].Transition(ctx, o.ID, StatusPending, StatusCancelled)
						}
						if err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			close(done)
			rwg.Wait()
			if readErr != nil {
				t.Fatal(readErr)
			}
			all := events(t, reader, 0)
			if len(all) != writers*perWriter*2 {
				t.Fatalf("%d events recorded; want %d", len(all), writers*perWriter*2)
			}
			for _, e := range all {
				if seen[e.ID] != 1 {
					t.Fatalf("event %d seen %d times by the following reader; want exactly once (%d of %d seen)",
						e.ID, seen[e.ID], len(seen), len(all))
				}
			}
		})

		t.Run("prune old events", func(t *testing.T) {
			st := openStore(t, newURL(t))
			st.now = func() time.Time { return time.Now().Add(-48 * time.Hour) }
			if _, err := st.Create(ctx, newOrder(2)); err != nil {
				t.Fatal(err)
			}
			st.now = time.Now
			if _, err := st.Create(ctx, newOrder(2)); err != nil {
				t.Fatal(err)
			}
			if n, err := st.PruneEvents(ctx, time.Now().Add(-eventRetention)); err != nil || n != 1 {
				t.Fatalf("PruneEvents = %d, %v; want 1", n, err)
			}
			if last, _ := st.LastEventID(ctx); last != 2 || len(events(t, st, 0)) != 1 {
				t.Fatalf("after pruning: last %d, %d events", last, len(events(t, st, 0)))
			}
		})

		t.Run("money totals stay exact", func(t *testing.T) {
			st := openStore(t, newURL(t))
			in := newOrder(2)
			in.Items = []Item{{ProductID: 1, Name: "x", Quantity: 3, UnitPrice: money.Cents(10)}, {ProductID: 2, Name: "y", Quantity: 7, UnitPrice: 1}}
			o, _ := st.Create(ctx, in)
			if got, _ := st.Get(ctx, o.ID); got.Total != 37 || fmt.Sprint(got.Total) != "0.37" {
				t.Fatalf("total = %v", got.Total)
			}
		})
	})
}
