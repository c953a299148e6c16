package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/archway-gateway/archway/backends/internal/sqldb"
	"github.com/archway-gateway/archway/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopSharedRabbitMQ()
	os.Exit(code)
}

func TestDecodeRejectsWhatNoRetryCanFix(t *testing.T) {
	good := `{"id":"e1","type":"order.cancelled","version":1,"order_id":7,"occurred_at":"2026-01-02T03:04:05Z","data":{"order_id":7,"ref":"ord-x"}}`
	if e, err := Decode([]byte(good)); err != nil || e.ID != "e1" || e.OrderID != 7 {
		t.Fatalf("Decode(good) = %+v, %v", e, err)
	}
	for name, body := range map[string]string{
		"not json":        `{"id":`,
		"no id":           `{"type":"order.paid","version":1}`,
		"no type":         `{"id":"e1","version":1}`,
		"unknown version": `{"id":"e1","type":"order.paid","version":2}`,
	} {
		if _, err := Decode([]byte(body)); !errors.Is(err, ErrPermanent) {
			t.Errorf("%s: Decode = %v, want ErrPermanent", name, err)
		}
	}
	e, _ := Decode([]byte(`{"id":"e1","type":"order.paid","version":1,"order_id":7,"data":{"order_id":8}}`))
	if _, err := e.OrderChange(); !errors.Is(err, ErrPermanent) {
		t.Errorf("payload of another order: %v, want ErrPermanent", err)
	}
}

// message builds a publishable order event.
func message(orderID int64, typ Type) Message {
	data, _ := json.Marshal(OrderChange{OrderID: orderID, Ref: fmt.Sprintf("ord-%d", orderID), Status: "cancelled"})
	env := Envelope{ID: NewID(), Type: typ, Version: Version, OrderID: orderID, OccurredAt: time.Now().UTC(), Data: data}
	body, _ := json.Marshal(env)
	return Message{ID: env.ID, Type: typ, OrderID: orderID, At: env.OccurredAt, Body: body}
}

// queueDepth returns the ready messages of a queue.
func queueDepth(t *testing.T, url, queue string) int {
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
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

// eventually waits for cond, failing after a generous bound (the condition, not the time, is
// what the test checks).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startConsumer(t *testing.T, cfg ConsumerConfig, h Handler) (*Consumer, func()) {
	t.Helper()
	ready := make(chan struct{}, 16)
	cfg.OnReady = func() { ready <- struct{}{} }
	c, err := NewConsumer(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("consumer did not subscribe")
	}
	return c, stop
}

// A poison message is dead-lettered at once, one that keeps failing after MaxDeliveries, and
// the messages around them are applied.
func TestConsumerDeadLettersPoisonAndFailingMessages(t *testing.T) {
	rmq := testenv.SharedRabbitMQ(t)
	queue := "test.dead-letter." + NewID()[:8]
	var applied sync.Map
	var attemptsOfFailing atomic.Int32
	c, _ := startConsumer(t, ConsumerConfig{URL: rmq.URL, Queue: queue, Bindings: []string{"order.paid"},
		Prefetch: 4, MaxDeliveries: 3}, func(_ context.Context, e Envelope) error {
		if e.OrderID == 2 {
			attemptsOfFailing.Add(1)
			return errors.New("database unavailable")
		}
		applied.Store(e.OrderID, true)
		return nil
	})
	pub := NewPublisher(rmq.URL)
	defer pub.Close()
	msgs := []Message{message(1, OrderPaid), message(2, OrderPaid), message(3, OrderPaid)}
	poison := message(4, OrderPaid)
	poison.Body = []byte(`{"id":"poison","type":"order.paid","version":1,"data":`)
	msgs = append(msgs, poison, message(5, OrderPaid))
	if n, err := pub.Publish(context.Background(), msgs); err != nil || n != len(msgs) {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	eventually(t, "orders 1, 3 and 5 applied and two messages dead-lettered", func() bool {
		_, a := applied.Load(int64(1))
		_, b := applied.Load(int64(3))
		_, d := applied.Load(int64(5))
		return a && b && d && queueDepth(t, rmq.URL, queue+DeadLetterSuffix) == 2
	})
	if n := attemptsOfFailing.Load(); n != 3 {
		t.Errorf("the failing message was tried %d times, want MaxDeliveries = 3", n)
	}
	if st := c.Stats(); st.Applied != 3 || st.DeadLetters != 1 || st.Failed != 3 {
		t.Errorf("stats %+v, want 3 applied, 1 dead-lettered at once, 3 failures", st)
	}
	if _, ok := applied.Load(int64(4)); ok {
		t.Error("the poison message was applied")
	}
}

// The publisher and the consumer both survive a broker restart: messages published after it
// arrive, and nothing confirmed before it is lost (durable queue, persistent messages).
func TestPublisherAndConsumerReconnectAfterBrokerRestart(t *testing.T) {
	rmq := testenv.SharedRabbitMQ(t)
	queue := "test.reconnect." + NewID()[:8]
	var mu sync.Mutex
	got := map[int64]int{}
	c, _ := startConsumer(t, ConsumerConfig{URL: rmq.URL, Queue: queue, Bindings: []string{"order.#"}},
		func(_ context.Context, e Envelope) error {
			mu.Lock()
			defer mu.Unlock()
			got[e.OrderID]++
			return nil
		})
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	pub := NewPublisher(rmq.URL)
	defer pub.Close()
	ctx := context.Background()
	if n, err := pub.Publish(ctx, []Message{message(1, OrderCreated)}); n != 1 || err != nil {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	eventually(t, "the first event", func() bool { return count() == 1 })

	rmq.Stop()
	if n, err := pub.Publish(ctx, []Message{message(2, OrderCreated)}); n != 0 || err == nil {
		t.Fatalf("Publish with the broker down = %d, %v; want 0 and an error", n, err)
	}
	rmq.Start(t)
	var n int
	var err error
	eventually(t, "a publish after the restart", func() bool {
		n, err = pub.Publish(ctx, []Message{message(2, OrderCreated), message(3, OrderCreated)})
		return err == nil
	})
	if n != 2 {
		t.Fatalf("confirmed %d of 2", n)
	}
	eventually(t, "the consumer to resubscribe and get both", func() bool { return count() == 3 })
	if st := c.Stats(); st.Connections < 2 {
		t.Errorf("connections %d, want a resubscription", st.Connections)
	}
}

// Once applies an event id once per consumer, whatever the number of deliveries, and a failed
// apply leaves no record (so the redelivery applies it).
func TestOnceAppliesAnEventOnce(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(ctx, ProcessedTableSQL); err != nil {
		t.Fatal(err)
	}
	applies := 0
	apply := func(*sqldb.Tx) error { applies++; return nil }
	if ok, err := Once(ctx, db, "c", "e1", func(*sqldb.Tx) error { return errors.New("boom") }); ok || err == nil {
		t.Fatalf("failing apply: %v, %v", ok, err)
	}
	for i := range 3 {
		ok, err := Once(ctx, db, "c", "e1", apply)
		if err != nil || ok != (i == 0) {
			t.Fatalf("delivery %d: applied %v, %v", i+1, ok, err)
		}
	}
	if ok, _ := Once(ctx, db, "other", "e1", apply); !ok {
		t.Error("another consumer must apply the same event too")
	}
	if applies != 2 {
		t.Errorf("applied %d times, want 2 (once per consumer)", applies)
	}
}

// The envelope example of docs/backends.md decodes as a consumer decodes it.
func TestDocumentedEnvelopeDecodes(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "backends.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	start := strings.Index(text, "### Catalogue")
	if start < 0 {
		t.Fatal("docs/backends.md has no event catalogue")
	}
	block := text[start:]
	i := strings.Index(block, "```json\n")
	j := strings.Index(block[i+8:], "```")
	if i < 0 || j < 0 {
		t.Fatal("no JSON example in the catalogue")
	}
	e, err := Decode([]byte(block[i+8 : i+8+j]))
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.OrderChange()
	if err != nil || e.Type != OrderCancelled || c.Reason != ReasonExpired || c.Ref == "" || len(c.Items) != 1 || c.Seq == 0 {
		t.Fatalf("documented event: %+v %+v, %v", e, c, err)
	}
	for _, typ := range []Type{OrderCreated, OrderPaid, OrderCancelled, OrderShipped, OrderDelivered} {
		if !strings.Contains(text, "| `"+string(typ)+"` |") {
			t.Errorf("the catalogue does not list %s", typ)
		}
	}
}
