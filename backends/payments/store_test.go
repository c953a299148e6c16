package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

func newPayment(user int64, key string) NewPayment {
	return NewPayment{UserID: user, IdempotencyKey: key, Fingerprint: "fp-" + key, OrderID: 7, Amount: 12_50,
		Currency: "USD", CardBrand: "visa", CardLast4: "4242"}
}

// TestStoreContract runs the same store behaviour on SQLite and on a real PostgreSQL.
func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	sqldbtest.ForEachEngine(t, func(t *testing.T, newURL sqldbtest.NewURL) {
		t.Run("begin, complete, replay", func(t *testing.T) {
			st := openStore(t, newURL(t))
			p, claimed, err := st.Begin(ctx, newPayment(2, "k1"))
			if err != nil || !claimed || p.Status != StatusProcessing || p.ID == 0 {
				t.Fatalf("Begin = %+v, %v, %v", p, claimed, err)
			}
			done, err := st.Complete(ctx, p.ID, Outcome{Approved: true, Reference: "sim_1"})
			if err != nil || done.Status != StatusSucceeded || done.DeclineReason != nil || done.Amount != 12_50 || done.CardLast4 != "4242" {
				t.Fatalf("Complete = %+v, %v", done, err)
			}
			// A second outcome never overwrites the first.
			if again, err := st.Complete(ctx, p.ID, Outcome{DeclineReason: "generic_decline"}); err != nil || again.Status != StatusSucceeded {
				t.Fatalf("second Complete = %+v, %v", again, err)
			}
			replay, claimed, err := st.Begin(ctx, newPayment(2, "k1"))
			if err != nil || claimed || replay.ID != p.ID || replay.Status != StatusSucceeded || !replay.CreatedAt.Equal(done.CreatedAt) {
				t.Fatalf("replayed Begin = %+v, %v, %v", replay, claimed, err)
			}
			other := newPayment(2, "k1")
			other.Fingerprint = "fp-other"
			if _, _, err := st.Begin(ctx, other); !errors.Is(err, ErrKeyReused) {
				t.Fatalf("same key, other request: %v; want ErrKeyReused", err)
			}
			// Keys are per user: another user's identical key is a new payment.
			if q, claimed, err := st.Begin(ctx, newPayment(3, "k1")); err != nil || !claimed || q.ID == p.ID {
				t.Fatalf("other user's key = %+v, %v, %v", q, claimed, err)
			}
			declined, _, _ := st.Begin(ctx, newPayment(2, "k2"))
			declined, err = st.Complete(ctx, declined.ID, Outcome{DeclineReason: "insufficient_funds"})
			if err != nil || declined.Status != StatusDeclined || declined.DeclineReason == nil || *declined.DeclineReason != "insufficient_funds" {
				t.Fatalf("declined = %+v, %v", declined, err)
			}
			if got, err := st.Get(ctx, declined.ID); err != nil || got.Status != StatusDeclined || got.UserID != 2 {
				t.Fatalf("Get = %+v, %v", got, err)
			}
			if _, err := st.Get(ctx, 999); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get(999): %v", err)
			}
		})

		t.Run("claims: running, released, stale", func(t *testing.T) {
			st := openStore(t, newURL(t))
			p, _, _ := st.Begin(ctx, newPayment(2, "k"))
			now := time.Now()
			if ok, err := st.Claim(ctx, p.ID, now.Add(-staleAfter)); err != nil || ok {
				t.Fatalf("claim of a running attempt = %v, %v; want false", ok, err)
			}
			if ok, err := st.Claim(ctx, p.ID, now.Add(time.Second)); err != nil || !ok {
				t.Fatalf("claim of a stale attempt = %v, %v; want true", ok, err)
			}
			if err := st.Unclaim(ctx, p.ID); err != nil {
				t.Fatal(err)
			}
			if ok, err := st.Claim(ctx, p.ID, now.Add(-staleAfter)); err != nil || !ok {
				t.Fatalf("claim of a released attempt = %v, %v; want true", ok, err)
			}
			if _, err := st.Complete(ctx, p.ID, Outcome{Approved: true}); err != nil {
				t.Fatal(err)
			}
			if ok, _ := st.Claim(ctx, p.ID, now.Add(time.Hour)); ok {
				t.Fatal("claimed a completed payment")
			}
		})

		t.Run("concurrent identical begins on two handles claim once", func(t *testing.T) {
			url := newURL(t)
			stores := []*Store{openStore(t, url), openStore(t, url)}
			var claims atomic.Int32
			ids := sync.Map{}
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Go(func() {
					p, claimed, err := stores[i%2].Begin(ctx, newPayment(2, "same"))
					if err != nil {
						t.Error(err)
						return
					}
					if claimed {
						claims.Add(1)
					}
					ids.Store(p.ID, true)
				})
			}
			wg.Wait()
			n := 0
			ids.Range(func(any, any) bool { n++; return true })
			if claims.Load() != 1 || n != 1 {
				t.Fatalf("%d claims, %d distinct payments; want 1 and 1", claims.Load(), n)
			}
		})
	})
}
