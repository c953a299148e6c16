package main

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Feed defaults.
const (
	DefaultPollInterval = 250 * time.Millisecond
	feedBatch           = 500
	subscriptionBuffer  = 64
	eventRetention      = 24 * time.Hour
	pruneEvery          = 10 * time.Minute
)

// Feed pushes order status changes to this instance's subscribers (the WebSockets). With a
// broker, the changes come from this instance's own queue (UseBroker, HandleEvent). Without one,
// it tails the outbox by id: every instance reads every event, as every instance has its own
// queue on the broker, so a change made by any instance sharing the database reaches every
// instance's subscribers within one poll interval, with the payload a broker would carry; Kick
// makes a change made here go out at once.
//
// Run it once, in a goroutine the caller owns; Subscribe and Kick are safe from any goroutine.
type Feed struct {
	store    *Store
	log      *slog.Logger
	interval time.Duration
	cursor   int64 // owned by Run
	kick     chan struct{}
	// external: changes arrive from the message broker through HandleEvent, and Run does not
	// poll. Set before Run.
	external bool

	mu     sync.Mutex
	subs   map[int64]map[*Subscription]struct{} // by user id
	closed bool
}

// Why a subscription ended; the WebSocket tells its client with a close code.
const (
	endSlow     = "slow"     // it fell subscriptionBuffer events behind
	endShutdown = "shutdown" // the service is stopping
)

// Subscription receives the events of one user's orders on C until C is closed; Reason then
// tells why. Unsubscribe when done.
type Subscription struct {
	UserID int64
	C      <-chan Event
	c      chan Event
	reason string // set before c is closed, under Feed.mu
}

// NewFeed returns a feed that starts after the newest event already recorded: subscribers get
// the changes committed after they subscribe.
func NewFeed(ctx context.Context, store *Store, log *slog.Logger, interval time.Duration) (*Feed, error) {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	cursor, err := store.LastOutboxID(ctx)
	if err != nil {
		return nil, err
	}
	return &Feed{store: store, log: log, interval: interval, cursor: cursor, kick: make(chan struct{}, 1),
		subs: map[int64]map[*Subscription]struct{}{}}, nil
}

// Subscribe registers a subscriber for userID's order events. After a shutdown the returned
// subscription is already closed.
func (f *Feed) Subscribe(userID int64) *Subscription {
	c := make(chan Event, subscriptionBuffer)
	s := &Subscription{UserID: userID, C: c, c: c}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		s.reason = endShutdown
		close(c)
		return s
	}
	if f.subs[userID] == nil {
		f.subs[userID] = map[*Subscription]struct{}{}
	}
	f.subs[userID][s] = struct{}{}
	return s
}

// Unsubscribe removes s; it is safe to call more than once and after the feed closed s.
func (f *Feed) Unsubscribe(s *Subscription) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.remove(s, "")
}

// Reason tells why s.C was closed.
func (f *Feed) Reason(s *Subscription) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return s.reason
}

// remove drops s; with a reason it also closes its channel. Call with f.mu held.
func (f *Feed) remove(s *Subscription, reason string) {
	set := f.subs[s.UserID]
	if _, ok := set[s]; !ok {
		return
	}
	delete(set, s)
	if len(set) == 0 {
		delete(f.subs, s.UserID)
	}
	if reason != "" {
		s.reason = reason
		close(s.c)
	}
}

// Kick asks Run to poll now rather than at the next tick (after a change made by this instance).
func (f *Feed) Kick() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Run polls until ctx ends, then closes every subscription (reason shutdown) and returns.
func (f *Feed) Run(ctx context.Context) {
	defer f.closeAll()
	var tickC <-chan time.Time
	if !f.external {
		tick := time.NewTicker(f.interval)
		defer tick.Stop()
		tickC = tick.C
	}
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-prune.C:
			if n, err := f.store.PruneEvents(ctx, time.Now().Add(-eventRetention)); err != nil {
				f.log.WarnContext(ctx, "pruning the order change feed failed", "error", err.Error())
			} else if n > 0 {
				f.log.DebugContext(ctx, "pruned the order change feed", "events", n)
			}
			continue
		case <-tickC:
		case <-f.kick:
			if f.external {
				continue
			}
		}
		err := f.poll(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true // logged once per outage, not every interval
			f.log.ErrorContext(ctx, "reading the order change feed failed; retrying every interval", "error", err.Error())
		case err == nil && failing:
			failing = false
			f.log.InfoContext(ctx, "reading the order change feed works again")
		}
	}
}

// poll delivers every outbox event after the cursor.
func (f *Feed) poll(ctx context.Context) error {
	for {
		batch, err := f.store.OutboxAfter(ctx, f.cursor, feedBatch)
		if err != nil {
			return err
		}
		events := make([]Event, 0, len(batch))
		for _, m := range batch {
			e, err := outboxEvent(m.msg.Body)
			if err != nil {
				// Written by this service in the transaction of the change, so never expected;
				// skipped rather than retried for ever.
				f.log.ErrorContext(ctx, "skipping an outbox event the feed cannot read", "outbox_id", m.id, "error", err.Error())
				continue
			}
			events = append(events, e)
		}
		if len(batch) > 0 {
			f.deliver(events)
			f.cursor = batch[len(batch)-1].id
		}
		if len(batch) < feedBatch {
			return nil
		}
	}
}

// deliver hands events to their users' subscribers without ever blocking: a subscriber whose
// buffer is full is dropped (its client reconnects and reloads its orders).
func (f *Feed) deliver(events []Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range events {
		for s := range f.subs[e.UserID] {
			select {
			case s.c <- e:
			default:
				f.remove(s, endSlow)
			}
		}
	}
}

func (f *Feed) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, set := range f.subs {
		for s := range set {
			f.remove(s, endShutdown)
		}
	}
}
