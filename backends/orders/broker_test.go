package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ev "github.com/archway-gateway/archway/backends/internal/events"
	"github.com/archway-gateway/archway/backends/internal/sqldb"
	"github.com/archway-gateway/archway/backends/internal/sqldb/sqldbtest"
	"github.com/archway-gateway/archway/internal/testenv"
	"go.opentelemetry.io/otel/propagation"
)

// waitFor waits for cond; the bound only stops a broken test from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// eventCounter is a consumer of every order event that records what it got: every delivery,
// and each event applied once through ev.Once against its own database.
type eventCounter struct {
	db         *sqldb.DB
	mu         sync.Mutex
	deliveries map[string]int            // by event id
	applied    map[string]int            // by event id, through Once
	firstSeqs  map[int64][]int64         // by order id: the seq of each event when first applied
	types      map[string]ev.Type        // by event id
	payloads   map[string]ev.OrderChange // by event id
}

func startEventCounter(t *testing.T, url string) *eventCounter {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "counter.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(ctx, ev.ProcessedTableSQL); err != nil {
		t.Fatal(err)
	}
	c := &eventCounter{db: db, deliveries: map[string]int{}, applied: map[string]int{}, firstSeqs: map[int64][]int64{},
		types: map[string]ev.Type{}, payloads: map[string]ev.OrderChange{}}
	ready := make(chan struct{}, 8)
	cons, err := ev.NewConsumer(ev.ConsumerConfig{URL: url, Queue: "test.orders.counter." + ev.NewID()[:8],
		Bindings: []string{"order.#"}, Prefetch: 8, OnReady: func() { ready <- struct{}{} }}, c.handle)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); cons.Run(cctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("counter did not subscribe")
	}
	return c
}

func (c *eventCounter) handle(ctx context.Context, e ev.Envelope) error {
	change, err := e.OrderChange()
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.deliveries[e.ID]++
	c.mu.Unlock()
	_, err = ev.Once(ctx, c.db, "counter", e.ID, func(*sqldb.Tx) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.applied[e.ID]++
		c.firstSeqs[e.OrderID] = append(c.firstSeqs[e.OrderID], change.Seq)
		c.types[e.ID], c.payloads[e.ID] = e.Type, change
		return nil
	})
	return err
}

func (c *eventCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.applied)
}

// outboxIDs returns every event id in the outbox and how many are unsent.
func outboxIDs(t *testing.T, st *Store) (ids []string, unsent int) {
	t.Helper()
	rows, err := st.db.Query(context.Background(), "SELECT event_id, sent_at IS NULL FROM outbox ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var pending bool
		if err := rows.Scan(&id, &pending); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if pending {
			unsent++
		}
	}
	return ids, unsent
}

func metricValue(t *testing.T, base, name string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("metric %s not exported", name)
	return ""
}

// The broker goes away while customers place and cancel orders: every request still succeeds,
// the events wait in the outbox, and once the broker is back every event is delivered, in order
// per order, each applied once; products releases the cancelled orders' stock once; WebSockets
// on the other instance get the changes through the broker.
func TestOrderEventsSurviveBrokerOutage(t *testing.T) {
	rmq := testenv.SharedRabbitMQ(t)
	counter := startEventCounter(t, rmq.URL)
	s := startStack(t, stackOptions{instances: 2, broker: brokerSettings{url: rmq.URL, pendingTTL: time.Hour, prefetch: 8}})
	s.setInventory(t, 1, 1000)
	st := s.orders[0].store
	body := `{"items":[{"product_id":1,"quantity":2}],"shipping_address":"Calle Mayor 1"}`

	// A WebSocket on instance 1 sees an order placed through instance 0, through the broker
	// (once instance 1's feed queue exists: events published before are not its).
	for _, inst := range s.orders {
		waitFor(t, "the instance's feed to subscribe", func() bool { return inst.events.consumer.Stats().Connections > 0 })
	}
	ws := dialWS(t, wsURL(s.orders[1], "?token="+s.customer), nil)
	first := s.placeOrder(t, body)
	ws.expectStatus(t, first, StatusPending)
	waitFor(t, "the first event", func() bool { return counter.count() == 1 })

	rmq.Stop()
	var placed []int
	for i := range 10 {
		r := s.order(t, i%2, s.customer, body)
		if r.status != 201 {
			t.Fatalf("order %d with the broker down: %d %s", i, r.status, r.raw)
		}
		placed = append(placed, int(r.object(t)["id"].(float64)))
	}
	for _, id := range placed[:3] {
		r := call(t, "PUT", fmt.Sprintf("%s/orders/%d/status", s.orders[1].url, id), s.customer, `{"status":"cancelled"}`)
		if r.status != 200 {
			t.Fatalf("cancel %d with the broker down: %d %s", id, r.status, r.raw)
		}
	}
	// No publish can succeed now: all 13 events wait, and the metrics say so on both instances.
	if _, unsent := outboxIDs(t, st); unsent != 13 {
		t.Fatalf("%d events wait in the outbox, want 13", unsent)
	}
	if v := metricValue(t, s.orders[1].url, "orders_outbox_pending_events"); v != "13" {
		t.Errorf("orders_outbox_pending_events = %s, want 13", v)
	}
	if got := s.inventory(t, 1); got != 1000-2*8 {
		t.Errorf("inventory %v during the outage, want %d (the cancellations released their stock by API)", got, 1000-2*8)
	}

	rmq.Start(t)
	waitFor(t, "all 14 events applied", func() bool { return counter.count() == 14 })
	waitFor(t, "the outbox emptied", func() bool { _, unsent := outboxIDs(t, st); return unsent == 0 })

	ids, _ := outboxIDs(t, st)
	counter.mu.Lock()
	defer counter.mu.Unlock()
	for _, id := range ids {
		if counter.applied[id] != 1 {
			t.Errorf("event %s applied %d times, want once", id, counter.applied[id])
		}
	}
	if len(ids) != 14 || len(counter.applied) != 14 {
		t.Errorf("outbox holds %d events, the consumer applied %d distinct; want 14 and 14", len(ids), len(counter.applied))
	}
	for order, seqs := range counter.firstSeqs {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				t.Errorf("order %d: events applied out of order: seqs %v", order, seqs)
			}
		}
	}
	cancelled := 0
	for id, typ := range counter.types {
		p := counter.payloads[id]
		if typ == ev.OrderCancelled {
			cancelled++
			if p.Reason != ev.ReasonRequested || len(p.Items) != 1 || p.Items[0] != (ev.Line{ProductID: 1, Quantity: 2}) || p.Ref == "" {
				t.Errorf("order.cancelled payload %+v", p)
			}
		}
	}
	if cancelled != 3 {
		t.Errorf("%d order.cancelled events, want 3", cancelled)
	}
	// products applied the three cancellations once each, and returned nothing twice.
	if got := s.inventory(t, 1); got != 1000-2*8 {
		t.Errorf("inventory %v after the outage, want %d", got, 1000-2*8)
	}
}

// An order left pending past the TTL is cancelled by orders (order.cancelled, reason expired),
// and products releases its reservation: the leak of abandoned orders is closed.
func TestUnpaidOrderExpiresAndItsStockReturns(t *testing.T) {
	rmq := testenv.SharedRabbitMQ(t)
	s := startStack(t, stackOptions{broker: brokerSettings{url: rmq.URL, pendingTTL: time.Second, prefetch: 8}})
	s.setInventory(t, 2, 50)
	id := s.placeOrder(t, `{"items":[{"product_id":2,"quantity":5}],"shipping_address":"Calle Mayor 1"}`)
	if got := s.inventory(t, 2); got != 45 {
		t.Fatalf("inventory after the order %v, want 45", got)
	}
	waitFor(t, "the order to expire", func() bool {
		r := call(t, "GET", fmt.Sprintf("%s/orders/%d", s.orders[0].url, id), s.customer, "")
		return r.status == 200 && r.object(t)["status"] == StatusCancelled
	})
	waitFor(t, "products to release the stock", func() bool { return s.inventory(t, 2) == 50 })
	if v := metricValue(t, s.orders[0].url, "orders_expired_total"); v != "1" {
		t.Errorf("orders_expired_total = %s, want 1", v)
	}
}

// The outbox on both engines: written in the transaction of the change, read oldest first,
// marked sent; one relay lease holder at a time; expiry cancels only what is pending and old.
func TestOutboxStore(t *testing.T) {
	ctx := context.Background()
	sqldbtest.ForEachEngine(t, func(t *testing.T, newURL sqldbtest.NewURL) {
		url := newURL(t)
		st := openStore(t, url)
		kicks := 0
		st.OnCommit(func() { kicks++ })
		a, err := st.Create(ctx, newOrder(2))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := st.Create(ctx, newOrder(3))
		if _, err := st.Transition(ctx, a.ID, StatusPending, StatusCancelled); err != nil {
			t.Fatal(err)
		}
		// A change that fails writes no event.
		if _, err := st.Transition(ctx, a.ID, StatusPending, StatusPaid); err == nil {
			t.Fatal("paid a cancelled order")
		}
		if kicks != 3 {
			t.Errorf("%d kicks, want one per committed event (3)", kicks)
		}
		unsent, err := st.Unsent(ctx, 10)
		if err != nil || len(unsent) != 3 {
			t.Fatalf("Unsent = %d, %v", len(unsent), err)
		}
		wantTypes := []ev.Type{ev.OrderCreated, ev.OrderCreated, ev.OrderCancelled}
		wantOrders := []int64{a.ID, b.ID, a.ID}
		for i, e := range unsent {
			env, err := ev.Decode(e.msg.Body)
			if err != nil {
				t.Fatal(err)
			}
			change, err := env.OrderChange()
			if err != nil || env.Type != wantTypes[i] || e.msg.Type != wantTypes[i] || env.OrderID != wantOrders[i] ||
				env.ID != e.msg.ID || change.Ref == "" || len(change.Items) != 2 {
				t.Errorf("event %d: %+v %+v, %v", i, env, change, err)
			}
			if i == 2 && change.Reason != ev.ReasonRequested {
				t.Errorf("cancellation reason %q", change.Reason)
			}
		}
		if n, oldest, err := st.OutboxBacklog(ctx); err != nil || n != 3 || oldest.IsZero() {
			t.Errorf("backlog = %d, %v, %v", n, oldest, err)
		}
		if err := st.MarkSent(ctx, unsent[0].id, unsent[1].id); err != nil {
			t.Fatal(err)
		}
		if rest, _ := st.Unsent(ctx, 10); len(rest) != 1 || rest[0].id != unsent[2].id {
			t.Errorf("after marking two sent: %d unsent", len(rest))
		}

		other := openStore(t, url)
		if ok, err := st.ClaimRelay(ctx, "one", time.Minute); !ok || err != nil {
			t.Fatalf("first claim: %v, %v", ok, err)
		}
		if ok, _ := other.ClaimRelay(ctx, "two", time.Minute); ok {
			t.Error("a second holder took a live lease")
		}
		if ok, _ := st.ClaimRelay(ctx, "one", time.Minute); !ok {
			t.Error("the holder could not renew its lease")
		}
		other.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
		if ok, _ := other.ClaimRelay(ctx, "two", time.Minute); !ok {
			t.Error("a lapsed lease was not taken over")
		}

		// b is pending; a is cancelled. Only b expires, once.
		expired, err := st.ExpirePending(ctx, time.Now().Add(time.Minute), 10)
		if err != nil || len(expired) != 1 || expired[0].ID != b.ID || expired[0].Status != StatusCancelled {
			t.Fatalf("ExpirePending = %+v, %v", expired, err)
		}
		if again, _ := st.ExpirePending(ctx, time.Now().Add(time.Minute), 10); len(again) != 0 {
			t.Errorf("expired again: %+v", again)
		}
		rest, _ := st.Unsent(ctx, 10)
		last, _ := ev.Decode(rest[len(rest)-1].msg.Body)
		if change, _ := last.OrderChange(); last.Type != ev.OrderCancelled || change.Reason != ev.ReasonExpired {
			t.Errorf("expiry event %+v %+v", last, change)
		}
	})
}

// TestOutboxEventCarriesTraceparent: an event written while serving a traced request carries
// that request's trace context in its envelope and as the message's header; one written outside
// a request (expiry) carries none.
func TestOutboxEventCarriesTraceparent(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "orders.db"))
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	traced := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	if _, err := st.Create(traced, newOrder(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(context.Background(), newOrder(3)); err != nil {
		t.Fatal(err)
	}
	unsent, err := st.Unsent(context.Background(), 10)
	if err != nil || len(unsent) != 2 {
		t.Fatalf("Unsent = %d, %v", len(unsent), err)
	}
	for i, want := range []string{tp, ""} {
		env, err := ev.Decode(unsent[i].msg.Body)
		if err != nil {
			t.Fatal(err)
		}
		if env.Traceparent != want || unsent[i].msg.Traceparent != want {
			t.Errorf("event %d: envelope %q, message %q, want %q", i, env.Traceparent, unsent[i].msg.Traceparent, want)
		}
	}
}
