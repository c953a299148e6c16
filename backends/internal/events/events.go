// Package events is the order event messaging of the backends: the event envelope and catalogue,
// the RabbitMQ topology, a publisher with publisher confirms, a consumer with bounded prefetch,
// dead-lettering and reconnection, and the idempotency record consumers keep in their own
// database. See docs/backends.md, "Order events".
package events

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Topology names. Every service declares what it uses, idempotently, on every (re)connection.
const (
	// Exchange is the topic exchange order events are published to; the routing key is the
	// event type (order.created, order.cancelled, ...).
	Exchange = "archway.orders"
	// DeadLetterExchange receives what a consumer gave up on; each durable queue Q has its
	// dead-letter queue Q + DeadLetterSuffix bound to it with routing key Q.
	DeadLetterExchange = "archway.dead-letter"
	DeadLetterSuffix   = ".dlq"
)

// Type is an event type, also the routing key.
type Type string

// The event catalogue. Every type carries an OrderChange payload, version 1.
const (
	OrderCreated   Type = "order.created"
	OrderPaid      Type = "order.paid"
	OrderCancelled Type = "order.cancelled"
	OrderShipped   Type = "order.shipped"
	OrderDelivered Type = "order.delivered"
)

// Version is the version of the OrderChange payload. A change that removes or retypes a field
// is a new version; consumers refuse versions they do not know (dead-lettered, not guessed at).
const Version = 1

// TypeForStatus is the event type of an order entering status.
func TypeForStatus(status string) (Type, error) {
	switch status {
	case "pending":
		return OrderCreated, nil
	case "paid":
		return OrderPaid, nil
	case "cancelled":
		return OrderCancelled, nil
	case "shipped":
		return OrderShipped, nil
	case "delivered":
		return OrderDelivered, nil
	}
	return "", fmt.Errorf("no event type for order status %q", status)
}

// Envelope is the JSON body of every message. ID is unique per event and the same on every
// redelivery: consumers record it to apply each event once.
type Envelope struct {
	ID         string    `json:"id"`
	Type       Type      `json:"type"`
	Version    int       `json:"version"`
	OrderID    int64     `json:"order_id"`
	OccurredAt time.Time `json:"occurred_at"`
	// Traceparent is the W3C trace context of the request that caused the event (empty for
	// events no request caused, such as the expiry of an unpaid order). It is also the
	// message's traceparent header on the broker.
	Traceparent string          `json:"traceparent,omitempty"`
	Data        json.RawMessage `json:"data"`
}

// Line is one line of an order in an event.
type Line struct {
	ProductID int64 `json:"product_id"`
	Quantity  int64 `json:"quantity"`
}

// OrderChange is the payload (version 1) of every order event: the order's status after the
// change. Ref is the order's reservation key at products.
type OrderChange struct {
	OrderID int64 `json:"order_id"`
	// Seq numbers the order's changes in the orders service's change feed: it only grows, so a
	// consumer that must not go back to an older status ignores an event below the last it saw.
	Seq    int64  `json:"seq"`
	Ref    string `json:"ref"`
	UserID int64  `json:"user_id"`
	Status string `json:"status"`
	// Reason says why an order was cancelled: "requested" (by its owner or an admin) or
	// "expired"; empty for other types.
	Reason string `json:"reason,omitempty"`
	Items  []Line `json:"items"`
}

// Reasons of order.cancelled.
const (
	ReasonRequested = "requested" // by the customer or an admin, through the API
	ReasonExpired   = "expired"   // pending and unpaid for longer than the orders service allows
)

// NewID returns a random event id (32 hex digits).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ErrPermanent marks a failure that no retry can fix (a malformed message, an unknown version):
// the message is dead-lettered at once instead of after the delivery limit.
var ErrPermanent = errors.New("permanent failure")

// Decode parses a message body and checks what every consumer relies on.
func Decode(body []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(body, &e); err != nil {
		return Envelope{}, fmt.Errorf("%w: decode event: %w", ErrPermanent, err)
	}
	switch {
	case e.ID == "" || len(e.ID) > 64:
		return Envelope{}, fmt.Errorf("%w: event without a valid id", ErrPermanent)
	case e.Type == "":
		return Envelope{}, fmt.Errorf("%w: event %s without a type", ErrPermanent, e.ID)
	case e.Version != Version:
		return Envelope{}, fmt.Errorf("%w: event %s has version %d; this consumer knows %d", ErrPermanent, e.ID, e.Version, Version)
	}
	return e, nil
}

// OrderChange decodes the payload of an order event.
func (e Envelope) OrderChange() (OrderChange, error) {
	var c OrderChange
	if err := json.Unmarshal(e.Data, &c); err != nil {
		return OrderChange{}, fmt.Errorf("%w: decode %s payload of event %s: %w", ErrPermanent, e.Type, e.ID, err)
	}
	if c.OrderID != e.OrderID {
		return OrderChange{}, fmt.Errorf("%w: event %s: payload order %d differs from envelope order %d", ErrPermanent, e.ID, c.OrderID, e.OrderID)
	}
	return c, nil
}
