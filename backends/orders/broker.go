package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/archway-gateway/archway/backends/internal/config"
	ev "github.com/archway-gateway/archway/backends/internal/events"
)

// DefaultPendingOrderTTL is how long an order may stay pending and unpaid before orders cancels
// it (when products hears of it: with a broker or a push secret; see brokerSettings).
const DefaultPendingOrderTTL = time.Hour

// brokerSettings are the flags of order events: over RabbitMQ, or without a broker, in-process
// and pushed to products.
type brokerSettings struct {
	url        string
	pendingTTL time.Duration
	prefetch   int
	// pushSecret, without a broker: the events products consumes are pushed to it over HTTP,
	// signed with this secret.
	pushSecret string
}

func (b *brokerSettings) register(fs *config.FlagSet) {
	fs.StringVar(&b.url, "amqp-url", "AMQP_URL", "",
		"RabbitMQ URL (amqp://user:password@host:5672/); when set, order events go through the transactional outbox to the broker, "+
			"WebSockets are fed from it, and unpaid orders expire; empty: events are delivered in-process from the outbox (see -events-secret)")
	fs.DurationVar(&b.pendingTTL, "pending-order-ttl", "PENDING_ORDER_TTL", DefaultPendingOrderTTL,
		"with -amqp-url or -events-secret: a pending order unpaid for this long is cancelled (order.cancelled, reason expired) and products releases its stock")
	fs.IntVar(&b.prefetch, "events-prefetch", "EVENTS_PREFETCH", ev.DefaultPrefetch,
		"with -amqp-url: unacknowledged status-change messages in flight to this instance's WebSocket feed")
	fs.StringVar(&b.pushSecret, "events-secret", "EVENTS_SECRET", "",
		"without -amqp-url: order.cancelled events are pushed from the outbox to products' "+ev.PushPath+
			", signed with this secret (at least 32 bytes; products needs the same), so products releases the stock of cancelled "+
			"and expired orders, and unpaid orders expire; empty: nothing is pushed")
}

func (b *brokerSettings) validate() error {
	if err := ev.ValidateSecret(b.pushSecret); err != nil {
		return err
	}
	switch {
	case !b.expires():
		return nil
	case b.pendingTTL < time.Second:
		return fmt.Errorf("pending order TTL %s is below 1s", b.pendingTTL)
	case b.url == "":
		return nil
	case b.prefetch < 1 || b.prefetch > 10_000:
		return fmt.Errorf("events prefetch %d is outside 1..10000", b.prefetch)
	}
	return ev.ValidateURL(b.url)
}

// expires says whether unpaid orders expire: only when products hears of the cancellation and
// releases the stock, else an expired order would keep its stock while saying it let it go.
func (b *brokerSettings) expires() bool { return b.url != "" || b.pushSecret != "" }

func (b *brokerSettings) describe() string {
	switch {
	case b.url != "":
		return ev.Redact(b.url)
	case b.pushSecret != "":
		return "none (in-process, pushed to products)"
	}
	return "none (in-process)"
}

// eventTasks are the background work of order events: the outbox relay (to the broker, or
// without one to the services events are pushed to), this instance's consumer for its WebSocket
// feed (with a broker; without one the feed tails the outbox itself), and the expiry of unpaid
// orders (when products hears of it).
type eventTasks struct {
	relay    *Relay
	consumer *ev.Consumer // nil without a broker
	push     *pushPublisher
	store    *Store
	ttl      time.Duration
	expire   bool
	log      *slog.Logger
	expired  prometheus.Counter
}

// newEventTasks wires the store and the feed to the broker when one is configured, and to
// in-process delivery (pushing to products through its client when a secret is set) otherwise.
func newEventTasks(store *Store, feed *Feed, b brokerSettings, products *peerClient, log *slog.Logger) *eventTasks {
	t := &eventTasks{store: store, ttl: b.pendingTTL, expire: b.expires(), log: log,
		expired: prometheus.NewCounter(prometheus.CounterOpts{Name: "orders_expired_total",
			Help: "Pending orders this instance cancelled because they stayed unpaid past -pending-order-ttl."})}
	t.push = newPushPublisher(log)
	if b.url == "" {
		if b.pushSecret != "" {
			t.push.add(products, []byte(b.pushSecret), ev.OrderCancelled)
		}
		t.relay = NewRelay(store, t.push, log, instanceName())
		store.OnCommit(t.relay.Kick)
		return t
	}
	t.relay = NewRelay(store, ev.NewPublisher(b.url), log, instanceName())
	store.OnCommit(t.relay.Kick)
	feed.UseBroker()
	// Validated by brokerSettings.validate, so NewConsumer cannot fail here.
	t.consumer, _ = ev.NewConsumer(ev.ConsumerConfig{URL: b.url, Bindings: []string{"order.#"}, Prefetch: b.prefetch,
		Log: log}, feed.HandleEvent)
	return t
}

// registerMetrics exports the outbox backlog and the counters of the tasks, with or without a
// broker (so dashboards and alerts always find the series).
func (t *eventTasks) registerMetrics(reg prometheus.Registerer) {
	registerOutboxMetrics(reg, t.store, t.relay)
	reg.MustRegister(t.expired, t.push.rejected)
}

// instanceName names this process in the relay lease.
func instanceName() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// start runs the tasks in goroutines owned by the returned stop, which cancels them and waits.
func (t *eventTasks) start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	run := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	run(t.relay.Run)
	if t.consumer != nil {
		run(t.consumer.Run)
	}
	if t.expire {
		run(t.expireUnpaid)
	}
	return func() { cancel(); wg.Wait() }
}

// expireUnpaid cancels orders left pending past the TTL, every quarter of it (at most every
// minute). Every instance sweeps; the conditional update lets exactly one cancel each order.
func (t *eventTasks) expireUnpaid(ctx context.Context) {
	every := min(max(t.ttl/4, 250*time.Millisecond), expirySweepMax)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for ctx.Err() == nil {
			expired, err := t.store.ExpirePending(ctx, time.Now().Add(-t.ttl), relayBatch)
			t.expired.Add(float64(len(expired)))
			for _, o := range expired {
				t.log.InfoContext(ctx, "order expired unpaid; cancelled", "order_id", o.ID, "created_at", o.CreatedAt)
			}
			if err != nil && ctx.Err() == nil {
				t.log.WarnContext(ctx, "expiring unpaid orders failed", "error", err.Error())
			}
			if err != nil || len(expired) < relayBatch {
				break
			}
		}
	}
}
