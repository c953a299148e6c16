package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	ev "github.com/archway-gateway/archway/backends/internal/events"
	"github.com/archway-gateway/archway/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopSharedRabbitMQ()
	os.Exit(code)
}

// cutProxy forwards TCP connections to the broker until cut, which drops every connection at
// once, as a killed consumer process or a broken network does. New connections are forwarded.
type cutProxy struct {
	addr  string
	mu    sync.Mutex
	conns []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(b, c); b.Close() }()
			go func() { _, _ = io.Copy(c, b); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func cancelledEvent(t *testing.T, orderID int64, ref string) []byte {
	t.Helper()
	data, _ := json.Marshal(ev.OrderChange{OrderID: orderID, Ref: ref, Status: "cancelled", Reason: ev.ReasonExpired})
	body, err := json.Marshal(ev.Envelope{ID: ev.NewID(), Type: ev.OrderCancelled, Version: ev.Version, OrderID: orderID,
		OccurredAt: time.Now().UTC(), Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func publishRaw(t *testing.T, url string, bodies ...[]byte) {
	t.Helper()
	pub := ev.NewPublisher(url)
	defer pub.Close()
	msgs := make([]ev.Message, len(bodies))
	for i, b := range bodies {
		msgs[i] = ev.Message{ID: ev.NewID(), Type: ev.OrderCancelled, Body: b, At: time.Now()}
	}
	if n, err := pub.Publish(context.Background(), msgs); err != nil || n != len(msgs) {
		t.Fatalf("publish: %d, %v", n, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The consumer's connection dies after the release committed and before the ack: the broker
// delivers the event again, and it is recognised and not applied twice. A poison message goes
// to the dead-letter queue and the events after it still flow. Every unit of stock is counted.
func TestReleaseConsumerKilledMidMessageAppliesOnce(t *testing.T) {
	rmq := testenv.SharedRabbitMQ(t)
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "products.db"))
	inv := int64(100)
	p, err := st.Create(ctx, ProductInput{Name: "Lamp", Price: 1000, Category: "home", Inventory: &inv})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"ord-a", "ord-b", "ord-c"} {
		if _, err := st.Reserve(ctx, p.ID, ref, "7", 10); err != nil {
			t.Fatal(err)
		}
	}
	proxy := newCutProxy(t, rmq.URL[len("amqp://guest:guest@"):len(rmq.URL)-1])
	queue := ReleaseQueue + ".test." + ev.NewID()[:8]

	var calls sync.Map // ref -> *atomic.Int32
	committed, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	handler := func(ctx context.Context, e ev.Envelope) error {
		c, _ := e.OrderChange()
		n, _ := calls.LoadOrStore(c.Ref, new(atomic.Int32))
		first := n.(*atomic.Int32).Add(1) == 1
		err := st.HandleOrderEvent(ctx, e)
		if err == nil && c.Ref == "ord-a" && first {
			once.Do(func() { close(committed); <-resume }) // the work is committed; the ack is not sent yet
		}
		return err
	}
	ready := make(chan struct{}, 8)
	cons, err := ev.NewConsumer(ev.ConsumerConfig{URL: "amqp://guest:guest@" + proxy.addr + "/", Queue: queue,
		Bindings: []string{string(ev.OrderCancelled)}, Prefetch: 1, MaxDeliveries: 5,
		OnReady: func() { ready <- struct{}{} }}, handler)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); cons.Run(cctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-ready

	publishRaw(t, rmq.URL, cancelledEvent(t, 1, "ord-a"), []byte(`{"id":"poison","version":1,`),
		cancelledEvent(t, 2, "ord-b"), cancelledEvent(t, 3, "ord-c"))
	<-committed
	proxy.cut() // the consumer dies with ord-a applied and not acked
	close(resume)
	<-ready // resubscribed through the proxy

	waitFor(t, "ord-b and ord-c released and the poison message dead-lettered", func() bool {
		var processed int
		_ = st.db.QueryRow(ctx, "SELECT COUNT(*) FROM processed_events WHERE consumer = ?", ReleaseQueue).Scan(&processed)
		return processed == 3 && dlqDepth(t, rmq.URL, queue) == 1
	})
	waitFor(t, "ord-a delivered again", func() bool {
		n, _ := calls.Load("ord-a")
		return n.(*atomic.Int32).Load() == 2
	})
	got, err := st.Get(ctx, p.ID)
	if err != nil || got.Inventory != 100 {
		t.Fatalf("inventory %d, %v; want 100: each of the three releases applied exactly once", got.Inventory, err)
	}
	if st := cons.Stats(); st.DeadLetters != 1 {
		t.Errorf("stats %+v, want one dead letter", st)
	}
	// A later release by the API finds nothing to return.
	res, err := st.Release(ctx, p.ID, "ord-a", "7", false, nil)
	if err != nil || !res.Replayed || res.Inventory != 100 {
		t.Errorf("API release after the event: %+v, %v", res, err)
	}
}

func dlqDepth(t *testing.T, url, queue string) int {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclarePassive(queue+ev.DeadLetterSuffix, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

func TestReleaseEventWithoutRefIsPermanent(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "products.db"))
	e, err := ev.Decode(cancelledEvent(t, 1, ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.HandleOrderEvent(context.Background(), e); !errors.Is(err, ev.ErrPermanent) {
		t.Fatalf("HandleOrderEvent = %v, want ErrPermanent", err)
	}
}
