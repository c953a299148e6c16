package events

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// dialTimeout bounds one connection attempt; heartbeat is how fast a dead broker is noticed on an
// idle connection.
const (
	dialTimeout = 5 * time.Second
	heartbeat   = 10 * time.Second
)

// ValidateURL checks an amqp:// or amqps:// URL without connecting.
func ValidateURL(raw string) error {
	if _, err := amqp.ParseURI(raw); err != nil {
		return fmt.Errorf("AMQP URL: %w", err)
	}
	return nil
}

// Redact returns the URL without its password, for logs.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "amqp://(unparsable)"
	}
	return u.Redacted()
}

func dial(ctx context.Context, raw string) (*amqp.Connection, error) {
	cfg := amqp.Config{Heartbeat: heartbeat, Locale: "en_US", Dial: amqp.DefaultDial(dialTimeout),
		Properties: amqp.Table{"connection_name": "archway"}}
	type result struct {
		c   *amqp.Connection
		err error
	}
	done := make(chan result, 1)
	go func() { c, err := amqp.DialConfig(raw, cfg); done <- result{c, err} }()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect to %s: %w", Redact(raw), r.err)
		}
		return r.c, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// declareExchanges declares the order events exchange and the dead-letter exchange.
func declareExchanges(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", Exchange, err)
	}
	if err := ch.ExchangeDeclare(DeadLetterExchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", DeadLetterExchange, err)
	}
	return nil
}

// Message is one event ready to publish: its envelope, already encoded as Body.
type Message struct {
	ID          string
	Type        Type
	OrderID     int64
	Traceparent string
	At          time.Time
	Body        []byte
}

// Publisher publishes to the order events exchange with publisher confirms. It connects on first
// use and again after any failure. Not safe for concurrent use: one goroutine (the outbox relay)
// owns it.
type Publisher struct {
	url  string
	conn *amqp.Connection
	ch   *amqp.Channel
}

// NewPublisher returns a publisher for the broker at url; it does not connect yet.
func NewPublisher(url string) *Publisher { return &Publisher{url: url} }

func (p *Publisher) connect(ctx context.Context) error {
	if p.ch != nil && !p.ch.IsClosed() && !p.conn.IsClosed() {
		return nil
	}
	p.Close()
	conn, err := dial(ctx, p.url)
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err == nil {
		err = declareExchanges(ch)
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("open publishing channel: %w", err)
	}
	p.conn, p.ch = conn, ch
	return nil
}

// Publish sends msgs in order and waits for the broker to confirm them. It returns how many of
// the first messages were confirmed: the caller marks those sent and sends the rest again later
// (at-least-once). Any failure drops the connection, so the next call reconnects.
func (p *Publisher) Publish(ctx context.Context, msgs []Message) (int, error) {
	if err := p.connect(ctx); err != nil {
		return 0, err
	}
	confirms := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	var pubErr error
	for _, m := range msgs {
		headers := amqp.Table{"version": int32(Version), "order_id": m.OrderID}
		if m.Traceparent != "" {
			headers["traceparent"] = m.Traceparent
		}
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, Exchange, string(m.Type), false, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: m.ID,
			Type: string(m.Type), Timestamp: m.At, AppId: "orders", Headers: headers, Body: m.Body,
		})
		if err != nil {
			pubErr = fmt.Errorf("publish event %s: %w", m.ID, err)
			break
		}
		confirms = append(confirms, dc)
	}
	confirmed := 0
	for i, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			pubErr = errors.Join(pubErr, fmt.Errorf("confirm of event %s: %w", msgs[i].ID, err))
			break
		}
		if !ok {
			pubErr = errors.Join(pubErr, fmt.Errorf("the broker refused event %s (nack)", msgs[i].ID))
			break
		}
		confirmed++
	}
	if pubErr != nil {
		p.Close()
	}
	return confirmed, pubErr
}

// Close drops the connection; a later Publish reconnects.
func (p *Publisher) Close() {
	if p.conn != nil {
		p.conn.Close()
	}
	p.conn, p.ch = nil, nil
}
