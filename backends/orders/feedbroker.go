package main

import (
	"context"

	ev "github.com/archway-gateway/archway/backends/internal/events"
)

// UseBroker makes the feed take status changes from the message broker (HandleEvent, called by
// this instance's own consumer) instead of polling the change feed. Call it before Run.
func (f *Feed) UseBroker() { f.external = true }

// HandleEvent delivers one order event from the broker to this instance's subscribers. It never
// blocks on a subscriber (see deliver), so the broker's message is acked at once.
func (f *Feed) HandleEvent(_ context.Context, e ev.Envelope) error {
	ch, err := feedEvent(e)
	if err != nil {
		return err
	}
	f.deliver([]Event{ch})
	return nil
}

// feedEvent is what a subscriber gets of an order event: the same from the broker and from the
// outbox.
func feedEvent(e ev.Envelope) (Event, error) {
	c, err := e.OrderChange()
	if err != nil {
		return Event{}, err
	}
	return Event{ID: c.Seq, OrderID: c.OrderID, UserID: c.UserID, Status: c.Status, At: e.OccurredAt.UTC()}, nil
}

// outboxEvent decodes an outbox row's message body for the feed.
func outboxEvent(body []byte) (Event, error) {
	e, err := ev.Decode(body)
	if err != nil {
		return Event{}, err
	}
	return feedEvent(e)
}
