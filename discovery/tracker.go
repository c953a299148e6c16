package discovery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// OnEmpty is what a Tracker does when the source says, authoritatively, that there are zero
// usable instances (as opposed to the source failing, which always keeps the last endpoints).
type OnEmpty string

const (
	// OnEmptyKeepLast keeps serving the last non-empty set for Policy.KeepLastFor, then serves
	// none. It is the default: a brief "zero passing" (a bad deploy, a flapping check, every
	// instance restarting at once) is survived; a lasting one fails cleanly.
	OnEmptyKeepLast OnEmpty = "keep_last"
	// OnEmptyFail serves no endpoints as soon as the source says there are none.
	OnEmptyFail OnEmpty = "fail"
)

// DefaultKeepLastFor bounds OnEmptyKeepLast when Policy.KeepLastFor is zero.
const DefaultKeepLastFor = 5 * time.Minute

// Policy is the failure policy of one upstream. The zero value is keep_last for
// DefaultKeepLastFor.
type Policy struct {
	OnEmpty OnEmpty
	// KeepLastFor bounds OnEmptyKeepLast: how long the last non-empty set is kept after the
	// source first said "empty". Zero means DefaultKeepLastFor.
	KeepLastFor time.Duration
}

// Validate reports an unknown OnEmpty or a negative KeepLastFor.
func (p Policy) Validate() error {
	switch p.OnEmpty {
	case "", OnEmptyKeepLast, OnEmptyFail:
	default:
		return fmt.Errorf("discovery: on_empty %q: want %q or %q", p.OnEmpty, OnEmptyKeepLast, OnEmptyFail)
	}
	if p.KeepLastFor < 0 {
		return fmt.Errorf("discovery: keep_last_for %s is negative", p.KeepLastFor)
	}
	return nil
}

func (p Policy) withDefaults() Policy {
	if p.OnEmpty == "" {
		p.OnEmpty = OnEmptyKeepLast
	}
	if p.KeepLastFor == 0 {
		p.KeepLastFor = DefaultKeepLastFor
	}
	return p
}

// Status says why a Tracker serves what it serves.
type Status int

const (
	// StatusPending: no authoritative snapshot yet; no endpoints.
	StatusPending Status = iota
	// StatusOK: serving the source's current, non-empty set.
	StatusOK
	// StatusKeptLast: the source says zero instances; serving the last non-empty set until
	// State.KeepUntil (on_empty: keep_last).
	StatusKeptLast
	// StatusEmpty: the source says zero instances and nothing is kept (on_empty: fail, the
	// keep_last time is up, or there never was a non-empty set); no endpoints.
	StatusEmpty
)

func (s Status) String() string {
	switch s {
	case StatusPending:
		return "pending"
	case StatusOK:
		return "ok"
	case StatusKeptLast:
		return "kept_last"
	case StatusEmpty:
		return "empty"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// State is what a Tracker serves now and why: the endpoints to use plus what an admin page such
// as the gateway's /upstreams shows. It is a value; Endpoints is shared and read-only.
type State struct {
	Service   string
	Endpoints []Endpoint // the endpoints to use now; empty for StatusPending and StatusEmpty
	Status    Status
	// SourceErr is the error of the last snapshot when the source is failing (Consul
	// unreachable): Endpoints are then the last known ones, possibly out of date. Nil when the
	// last snapshot was authoritative.
	SourceErr   error
	Errors      uint64    // failed snapshots received in total, for metrics
	LastError   error     // the most recent source error, kept after recovery
	LastErrorAt time.Time // when LastError was received
	UpdatedAt   time.Time // when the last authoritative snapshot was received; zero if none
	EmptySince  time.Time // when the source started saying "zero instances"; zero otherwise
	KeepUntil   time.Time // StatusKeptLast: when the kept set is dropped
	Index       uint64    // Index of the last authoritative snapshot
}

// Stale reports whether Endpoints may be out of date because the source is failing.
func (s State) Stale() bool { return s.SourceErr != nil }

// Tracker applies a Policy to the snapshots of one service and holds the result.
//
// Update is meant for one goroutine (Follow, or the caller's own loop); it is nevertheless safe to
// call concurrently. State is lock-free (one atomic load) and safe from any number of goroutines,
// which makes it fit for a request path. A Tracker must not be copied after first use.
type Tracker struct {
	service string
	policy  Policy
	now     func() time.Time

	mu       sync.Mutex // serializes Update
	lastGood []Endpoint // last non-empty authoritative set, for keep_last
	state    atomic.Pointer[State]
}

// NewTracker returns a Tracker in StatusPending. now is the clock (nil: time.Now); tests pass a
// fake one to move keep_last deadlines. The policy is checked with Policy.Validate.
func NewTracker(service string, p Policy, now func() time.Time) (*Tracker, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	t := &Tracker{service: service, policy: p.withDefaults(), now: now}
	t.state.Store(&State{Service: service, Status: StatusPending})
	return t, nil
}

// State returns what to serve now. A keep_last deadline that has passed takes effect here, at
// the read, even if no snapshot arrived since.
func (t *Tracker) State() State {
	return t.expired(*t.state.Load(), t.now())
}

// expired turns a kept set whose time is up into StatusEmpty.
func (t *Tracker) expired(s State, now time.Time) State {
	if s.Status == StatusKeptLast && !now.Before(s.KeepUntil) {
		s.Status, s.Endpoints, s.KeepUntil = StatusEmpty, nil, time.Time{}
	}
	return s
}

// Update applies one snapshot and reports whether the endpoints to use changed (a changed Status
// alone, such as a source error with the endpoints kept, does not count). Snapshots for another
// service are ignored.
func (t *Tracker) Update(snap Snapshot) (changed bool) {
	if snap.Service != t.service {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	prev := t.expired(*t.state.Load(), now)
	next := prev

	if snap.Err != nil {
		// The source cannot see the set: keep serving whatever we serve, including a kept set
		// whose deadline keeps running.
		next.SourceErr, next.LastError, next.LastErrorAt = snap.Err, snap.Err, now
		next.Errors++
		t.state.Store(&next)
		return false
	}

	next.SourceErr = nil
	next.UpdatedAt = now
	next.Index = snap.Index
	switch {
	case len(snap.Endpoints) > 0:
		t.lastGood = snap.Endpoints
		next.Endpoints, next.Status = snap.Endpoints, StatusOK
		next.EmptySince, next.KeepUntil = time.Time{}, time.Time{}
	default:
		if next.EmptySince.IsZero() {
			next.EmptySince = now
		}
		next.Endpoints, next.Status, next.KeepUntil = nil, StatusEmpty, time.Time{}
		if t.policy.OnEmpty == OnEmptyKeepLast && len(t.lastGood) > 0 {
			if until := next.EmptySince.Add(t.policy.KeepLastFor); now.Before(until) {
				next.Endpoints, next.Status, next.KeepUntil = t.lastGood, StatusKeptLast, until
			}
		}
	}
	t.state.Store(&next)
	return !sameEndpoints(prev.Endpoints, next.Endpoints) || (prev.Status == StatusPending) != (next.Status == StatusPending)
}

// Follow runs src.Watch and applies every snapshot until ctx ends, then returns ctx.Err(). It
// calls onChange (when not nil), from Follow's goroutine, with the new State each time the
// endpoints to use change, including when a keep_last deadline passes, and for the first
// authoritative snapshot. The Watch goroutine is owned by Follow and has ended when Follow returns.
func (t *Tracker) Follow(ctx context.Context, src Source, onChange func(State)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	snaps := make(chan Snapshot)
	watchDone := make(chan error, 1)
	go func() { watchDone <- src.Watch(ctx, snaps) }()
	watching := true
	defer func() {
		cancel()
		if watching {
			<-watchDone
		}
	}()

	var expiry *time.Timer
	var expiryC <-chan time.Time
	defer func() {
		if expiry != nil {
			expiry.Stop()
		}
	}()
	armExpiry := func(s State) {
		if expiry != nil {
			expiry.Stop()
			expiry, expiryC = nil, nil
		}
		if s.Status == StatusKeptLast {
			expiry = time.NewTimer(s.KeepUntil.Sub(t.now()))
			expiryC = expiry.C
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-watchDone:
			// Watch returns only when ctx is done; anything else is a broken Source.
			watching = false
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil {
				err = errors.New("returned without error")
			}
			return fmt.Errorf("discovery: source for %s stopped: %w", t.service, err)
		case snap := <-snaps:
			changed := t.Update(snap)
			s := t.State()
			armExpiry(s)
			if changed && onChange != nil {
				onChange(s)
			}
		case <-expiryC:
			expiry, expiryC = nil, nil
			s := t.State()
			if s.Status == StatusKeptLast { // the clock says not yet: wait again
				armExpiry(s)
				continue
			}
			if onChange != nil {
				onChange(s)
			}
		}
	}
}
