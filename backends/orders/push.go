package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	ev "github.com/archway-gateway/archway/backends/internal/events"
	"github.com/archway-gateway/archway/backends/internal/telemetry"
)

// pushPublisher is the relay's publisher without a broker. Each event goes to every service that
// consumes its type, as a signed POST of the envelope a broker would carry to that service's
// ev.PushPath, one event at a time and in outbox order; the relay marks an event sent only
// once every such service took it, so a service that is down gets its events, in order, when
// it is back. The delivery is at-least-once (a crash between the push and the marking repeats
// it); consumers apply each event id once. With no service to push to, every event is taken at
// once: the WebSocket feeds tail the outbox themselves.
//
// Configure it with add before the relay runs; then it is used by the relay's goroutine only.
type pushPublisher struct {
	targets  []pushTarget
	log      *slog.Logger
	rejected prometheus.Counter
}

// pushTarget is one consuming service and the event types it takes.
type pushTarget struct {
	client *peerClient
	secret []byte
	types  map[ev.Type]bool
}

var _ publisher = (*pushPublisher)(nil)

func newPushPublisher(log *slog.Logger) *pushPublisher {
	return &pushPublisher{log: log, rejected: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "orders_outbox_rejected_events_total",
		Help: "Order events a service refused for good (422) when pushed without a broker: logged and skipped, as a broker dead-letters them."})}
}

// add pushes the events of types to the service client calls, signed with secret.
func (p *pushPublisher) add(client *peerClient, secret []byte, types ...ev.Type) {
	t := pushTarget{client: client, secret: secret, types: map[ev.Type]bool{}}
	for _, typ := range types {
		t.types[typ] = true
	}
	p.targets = append(p.targets, t)
}

// Publish pushes msgs in order and returns how many leading ones every target took.
func (p *pushPublisher) Publish(ctx context.Context, msgs []ev.Message) (int, error) {
	for i, m := range msgs {
		for _, t := range p.targets {
			if !t.types[m.Type] {
				continue
			}
			if err := p.push(ctx, t, m); err != nil {
				return i, err
			}
		}
	}
	return len(msgs), nil
}

func (p *pushPublisher) push(ctx context.Context, t pushTarget, m ev.Message) error {
	// The push and its log lines belong to the trace of the request that caused the event.
	ctx = telemetry.WithTraceparent(ctx, m.Traceparent)
	r, err := t.client.do(ctx, peerCall{method: http.MethodPost, path: ev.PushPath, raw: m.Body,
		header: map[string]string{ev.SignatureHeader: ev.Sign(t.secret, m.Body)}, idempotent: true})
	if err != nil {
		return fmt.Errorf("push event %s: %w", m.ID, err)
	}
	switch {
	case r.status >= 200 && r.status < 300:
		return nil
	case r.status == http.StatusUnprocessableEntity:
		// No retry can make the service take it (it says the event is malformed or of a version
		// it does not know). Waiting would stop every later event behind it.
		p.rejected.Inc()
		p.log.ErrorContext(ctx, "a service refused an order event for good; skipped", "service", t.client.service, "event_id", m.ID,
			"type", string(m.Type), "order_id", m.OrderID, "error", r.errorMessage())
		return nil
	}
	// 401 (secrets differ), 404 (pushing not enabled there), 5xx: configuration or an outage;
	// the event waits in the outbox, and the relay logs the failure and backs off.
	return fmt.Errorf("push event %s: %w", m.ID, unexpected(t.client.service, r))
}

// Close is part of publisher; pushing holds nothing open beyond the peer client's idle connections.
func (p *pushPublisher) Close() {}
