package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	ev "github.com/archway-gateway/archway/backends/internal/events"
)

// testPushSecret is what orders and products share in the tests of delivery without a broker.
const testPushSecret = "orders-push-secret-0123456789abcdef"

// attemptsPerRound is how often one relay round asks products (the harness's peer client: one
// attempt and two retries of a 503): more attempts of an event mean the relay tried again.
const attemptsPerRound = 3

// pushLog records the events orders pushes to products through the fault proxy, in order, and
// lets a test refuse them.
type pushLog struct {
	mu       sync.Mutex
	attempts []string // event ids, every attempt
	refuse   func(id string) int
}

// watchPushes installs the recorder on the products proxy; other calls pass through.
func watchPushes(t *testing.T, s *stack) *pushLog {
	l := &pushLog{}
	s.products.set(func(r *http.Request) fault {
		if r.URL.Path != ev.PushPath {
			return fault{}
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
			return fault{status: 500}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		e, err := ev.Decode(body)
		if err != nil {
			t.Errorf("orders pushed a body that is not an event: %q: %v", body, err)
			return fault{status: 500}
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.attempts = append(l.attempts, e.ID)
		if l.refuse != nil {
			return fault{status: l.refuse(e.ID)}
		}
		return fault{}
	})
	return l
}

func (l *pushLog) setRefuse(f func(id string) int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refuse = f
}

func (l *pushLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.attempts)
}

// countOf says how often the event id was pushed.
func (l *pushLog) countOf(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.attempts {
		if a == id {
			n++
		}
	}
	return n
}

// cancelledIDs returns the ids of the outbox's order.cancelled events, oldest first.
func cancelledIDs(t *testing.T, st *Store) []string {
	t.Helper()
	rows, err := st.db.Query(context.Background(), "SELECT event_id FROM outbox WHERE type = ? ORDER BY id", string(ev.OrderCancelled))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// Without a broker (make run), an order left unpaid past the TTL is cancelled and products gets
// its order.cancelled event from the outbox over HTTP and returns the stock. While products
// refuses the event it waits in the outbox (and the metrics say so); then it is delivered, and
// delivered again it changes nothing: the stock comes back exactly once.
func TestUnpaidOrderExpiresWithoutABroker(t *testing.T) {
	s := startStack(t, stackOptions{broker: brokerSettings{pendingTTL: time.Second, pushSecret: testPushSecret}})
	o := s.orders[0]
	pushes := watchPushes(t, s)
	pushes.setRefuse(func(string) int { return http.StatusServiceUnavailable })
	s.setInventory(t, 2, 50)
	id := s.placeOrder(t, `{"items":[{"product_id":2,"quantity":5}],"shipping_address":"Calle Mayor 1"}`)
	if got := s.inventory(t, 2); got != 45 {
		t.Fatalf("inventory after the order %v, want 45", got)
	}
	waitFor(t, "the order to expire", func() bool {
		r := call(t, "GET", fmt.Sprintf("%s/orders/%d", o.url, id), s.customer, "")
		return r.status == 200 && r.object(t)["status"] == StatusCancelled
	})
	// products is refusing: the event waits (the relay comes back to it), and nothing came back.
	waitFor(t, "a second round of refused pushes", func() bool { return pushes.count() > attemptsPerRound })
	if _, unsent := outboxIDs(t, o.store); unsent != 1 {
		t.Fatalf("%d events wait in the outbox, want the cancellation only", unsent)
	}
	if v := metricValue(t, o.url, "orders_outbox_pending_events"); v != "1" {
		t.Errorf("orders_outbox_pending_events = %s, want 1", v)
	}
	if got := s.inventory(t, 2); got != 45 {
		t.Fatalf("inventory %v while products refuses the event, want 45", got)
	}

	pushes.setRefuse(nil)
	waitFor(t, "products to release the stock", func() bool { return s.inventory(t, 2) == 50 })
	waitFor(t, "the outbox to drain", func() bool { _, unsent := outboxIDs(t, o.store); return unsent == 0 })
	if v := metricValue(t, o.url, "orders_expired_total"); v != "1" {
		t.Errorf("orders_expired_total = %s, want 1", v)
	}

	// Delivered again (as after a crash between the push and its marking): applied once.
	before := pushes.count()
	if _, err := o.store.db.Exec(context.Background(), "UPDATE outbox SET sent_at = NULL"); err != nil {
		t.Fatal(err)
	}
	o.events.relay.Kick()
	waitFor(t, "the outbox to drain again", func() bool { _, unsent := outboxIDs(t, o.store); return unsent == 0 })
	if pushes.count() == before {
		t.Fatal("the event was not pushed again")
	}
	if got := s.inventory(t, 2); got != 50 {
		t.Fatalf("inventory %v after the event came twice, want 50", got)
	}
}

// Pushed events leave in outbox order, one at a time: a failure holds back every later one,
// and an event products refuses for good (422) is counted and skipped, not retried for ever.
func TestPushedEventsKeepOutboxOrder(t *testing.T) {
	s := startStack(t, stackOptions{instances: 2, broker: brokerSettings{pendingTTL: time.Hour, pushSecret: testPushSecret}})
	pushes := watchPushes(t, s)
	var poisoned string
	pushes.setRefuse(func(id string) int {
		if poisoned == "" {
			poisoned = id // the first cancellation: refused for good
			return http.StatusUnprocessableEntity
		}
		return http.StatusServiceUnavailable
	})
	var ids []int
	for range 4 {
		ids = append(ids, s.placeOrder(t, `{"items":[{"product_id":4,"quantity":1}],"shipping_address":"Calle Mayor 1"}`))
	}
	for i, id := range ids { // through both instances
		if r := call(t, "PUT", fmt.Sprintf("%s/orders/%d/status", s.orders[i%2].url, id), s.customer, `{"status":"cancelled"}`); r.status != 200 {
			t.Fatalf("cancel: %d %s", r.status, r.raw)
		}
	}
	st := s.orders[0].store
	want := cancelledIDs(t, st)
	if len(want) != 4 {
		t.Fatalf("%d cancellations in the outbox, want 4", len(want))
	}
	waitFor(t, "a second round of refusing the second cancellation", func() bool { return pushes.countOf(want[1]) > attemptsPerRound })
	if _, unsent := outboxIDs(t, st); unsent != 3 {
		t.Errorf("%d events wait, want the three cancellations after the refused one", unsent)
	}
	for _, id := range want[2:] {
		if n := pushes.countOf(id); n != 0 {
			t.Errorf("event %s was pushed %d times while an earlier one waited", id, n)
		}
	}
	pushes.setRefuse(nil)
	waitFor(t, "the outbox to drain", func() bool { _, unsent := outboxIDs(t, st); return unsent == 0 })

	pushes.mu.Lock()
	first := poisoned
	pushes.mu.Unlock()
	if want[0] != first {
		t.Fatalf("cancellations %v, the refused one %s", want, first)
	}
	pushes.mu.Lock()
	var delivered []string // attempts after the poisoned one, with repeats of a failed one folded
	for _, id := range pushes.attempts[1:] {
		if len(delivered) == 0 || delivered[len(delivered)-1] != id {
			delivered = append(delivered, id)
		}
	}
	pushes.mu.Unlock()
	if fmt.Sprint(delivered) != fmt.Sprint(want[1:]) {
		t.Errorf("pushed in the order %v, outbox order %v", delivered, want[1:])
	}
	rejected := 0
	for _, o := range s.orders {
		if metricValue(t, o.url, "orders_outbox_rejected_events_total") == "1" {
			rejected++
		}
	}
	if rejected != 1 {
		t.Errorf("%d instances counted the refused event, want 1 (the relay that pushed it)", rejected)
	}
}
