package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/archway-gateway/archway/backends/internal/telemetry"
)

// Consumer defaults.
const (
	DefaultPrefetch      = 16
	DefaultMaxDeliveries = 5
	reconnectMin         = 100 * time.Millisecond
	reconnectMax         = 5 * time.Second
)

// Handler applies one event. It returns nil once the event's effects are committed (the
// message is then acked), an error wrapping ErrPermanent for an event no retry can apply
// (dead-lettered at once), or any other error to have it delivered again (dead-lettered after
// MaxDeliveries attempts).
type Handler func(ctx context.Context, e Envelope) error

// ConsumerConfig describes one consumer.
type ConsumerConfig struct {
	URL string
	// Queue is a durable quorum queue shared by every instance of the consuming service, with
	// its dead-letter queue Queue+".dlq". Empty: a queue of this process alone (server-named,
	// exclusive, deleted with the connection), for fan-out to every instance; nothing is
	// dead-lettered from it.
	Queue string
	// Bindings are the routing key patterns bound to the exchange ("order.cancelled", "order.#").
	Bindings []string
	// Prefetch bounds the unacknowledged messages in flight to this consumer.
	Prefetch int
	// MaxDeliveries is how many times a message is delivered before the broker dead-letters it.
	MaxDeliveries int
	Log           *slog.Logger
	// OnReady, when set, is called each time the consumer is (re)subscribed.
	OnReady func()
}

// Consumer consumes order events with reconnection. Run it in a goroutine the caller owns;
// Stats is safe from any goroutine.
type Consumer struct {
	cfg     ConsumerConfig
	handle  Handler
	applied atomic.Int64
	failed  atomic.Int64
	dropped atomic.Int64
	conns   atomic.Int64
}

// NewConsumer checks cfg and returns a consumer; Run connects.
func NewConsumer(cfg ConsumerConfig, h Handler) (*Consumer, error) {
	if err := ValidateURL(cfg.URL); err != nil {
		return nil, err
	}
	if len(cfg.Bindings) == 0 {
		return nil, errors.New("consumer without bindings")
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = DefaultPrefetch
	}
	if cfg.MaxDeliveries <= 0 {
		cfg.MaxDeliveries = DefaultMaxDeliveries
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Consumer{cfg: cfg, handle: h}, nil
}

// ConsumerStats counts what a consumer did since it started.
type ConsumerStats struct {
	Applied     int64 // handled and acked
	Failed      int64 // handled with an error and returned for redelivery
	DeadLetters int64 // rejected to the dead-letter queue (permanent failures)
	Connections int64 // successful (re)subscriptions
}

// Stats returns the counters.
func (c *Consumer) Stats() ConsumerStats {
	return ConsumerStats{Applied: c.applied.Load(), Failed: c.failed.Load(), DeadLetters: c.dropped.Load(),
		Connections: c.conns.Load()}
}

// Run consumes until ctx ends, reconnecting after every broker or network failure with a
// backoff from 100 ms doubling to 5 s.
func (c *Consumer) Run(ctx context.Context) {
	wait := reconnectMin
	failing := false
	for ctx.Err() == nil {
		subscribed, err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if subscribed {
			wait = reconnectMin
		}
		if !failing || subscribed {
			c.cfg.Log.WarnContext(ctx, "event consumer disconnected; reconnecting", "queue", c.cfg.Queue, "error", errString(err))
		}
		failing = true
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, reconnectMax)
	}
}

func errString(err error) string {
	if err == nil {
		return "connection closed"
	}
	return err.Error()
}

// session is one connection's life: declare, subscribe, handle deliveries until the connection
// or ctx ends. subscribed tells whether it got as far as consuming.
func (c *Consumer) session(ctx context.Context) (subscribed bool, err error) {
	conn, err := dial(ctx, c.cfg.URL)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("set prefetch: %w", err)
	}
	queue, err := c.declare(ch)
	if err != nil {
		return false, err
	}
	deliveries, err := ch.ConsumeWithContext(ctx, queue, "", false, c.cfg.Queue == "", false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume %s: %w", queue, err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	c.conns.Add(1)
	c.cfg.Log.InfoContext(ctx, "event consumer subscribed", "queue", queue, "bindings", c.cfg.Bindings, "prefetch", c.cfg.Prefetch)
	if c.cfg.OnReady != nil {
		c.cfg.OnReady()
	}
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case e := <-closed:
			if e == nil {
				return true, nil
			}
			return true, e
		case d, ok := <-deliveries:
			if !ok {
				return true, errors.New("delivery channel closed")
			}
			if err := c.deliver(ctx, d); err != nil {
				return true, err
			}
		}
	}
}

// declare declares the exchanges, the queue (and its dead-letter queue) and the bindings, and
// returns the queue's name.
func (c *Consumer) declare(ch *amqp.Channel) (string, error) {
	if err := declareExchanges(ch); err != nil {
		return "", err
	}
	var q amqp.Queue
	var err error
	if c.cfg.Queue == "" {
		q, err = ch.QueueDeclare("", false, true, true, false, nil)
	} else {
		dlq := c.cfg.Queue + DeadLetterSuffix
		if _, err = ch.QueueDeclare(dlq, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
			return "", fmt.Errorf("declare queue %s: %w", dlq, err)
		}
		if err = ch.QueueBind(dlq, c.cfg.Queue, DeadLetterExchange, false, nil); err != nil {
			return "", fmt.Errorf("bind queue %s: %w", dlq, err)
		}
		// A quorum queue counts deliveries, including those returned by a consumer that died
		// mid-message, and dead-letters a message after the limit.
		q, err = ch.QueueDeclare(c.cfg.Queue, true, false, false, false, amqp.Table{
			"x-queue-type":              "quorum",
			"x-delivery-limit":          int32(c.cfg.MaxDeliveries - 1), // redeliveries after the first
			"x-dead-letter-exchange":    DeadLetterExchange,
			"x-dead-letter-routing-key": c.cfg.Queue,
		})
	}
	if err != nil {
		return "", fmt.Errorf("declare queue %q: %w", c.cfg.Queue, err)
	}
	for _, key := range c.cfg.Bindings {
		if err := ch.QueueBind(q.Name, key, Exchange, false, nil); err != nil {
			return "", fmt.Errorf("bind queue %s to %s: %w", q.Name, key, err)
		}
	}
	return q.Name, nil
}

// deliver handles one message and acks it only after the handler returned (its work committed).
// An error returned here is an acknowledgement that could not be sent: the connection is gone and
// the broker delivers the message again.
func (c *Consumer) deliver(ctx context.Context, d amqp.Delivery) error {
	e, err := Decode(d.Body)
	if err == nil {
		// The handling and its log lines belong to the trace of the request that caused the
		// event.
		ctx = telemetry.WithTraceparent(ctx, e.Traceparent)
		err = c.handle(ctx, e)
	}
	switch {
	case err == nil:
		c.applied.Add(1)
		return d.Ack(false)
	case errors.Is(err, ErrPermanent):
		c.dropped.Add(1)
		c.cfg.Log.ErrorContext(ctx, "event dead-lettered", "queue", c.cfg.Queue, "message_id", d.MessageId, "error", err.Error())
		return d.Nack(false, false)
	default:
		c.failed.Add(1)
		c.cfg.Log.WarnContext(ctx, "event failed; it will be delivered again", "queue", c.cfg.Queue, "message_id", d.MessageId,
			"redelivered", d.Redelivered, "error", err.Error())
		return d.Nack(false, true)
	}
}
