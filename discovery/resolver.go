package discovery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// ErrNoEndpoints is returned (wrapped) by Resolver.Pick when there is nothing to pick.
var ErrNoEndpoints = errors.New("discovery: no endpoints")

// Resolver keeps the endpoint set of one service up to date and picks one per call, round-robin.
// It is meant for service-to-service calls (orders finding products and payments), not for the
// gateway, whose balancers take the whole set from a Tracker.
//
// The failure policy is a Tracker's: a failing source keeps the last endpoints, "zero instances"
// follows the Policy. Weights are ignored.
//
// Run it once, in a goroutine the caller owns. Pick, State and Ready are lock-free and safe from
// any number of goroutines. A Resolver must not be copied.
type Resolver struct {
	service string
	src     Source
	tracker *Tracker
	next    atomic.Uint64
	ready   chan struct{}
	once    sync.Once
}

// NewResolver returns a resolver for service fed by src (a source of that service).
func NewResolver(service string, src Source, p Policy) (*Resolver, error) {
	if err := validService(service); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("discovery: resolver needs a source")
	}
	t, err := NewTracker(service, p, nil)
	if err != nil {
		return nil, err
	}
	return &Resolver{service: service, src: src, tracker: t, ready: make(chan struct{})}, nil
}

// Run watches the source until ctx ends and returns ctx.Err().
func (r *Resolver) Run(ctx context.Context) error {
	return r.tracker.Follow(ctx, r.src, func(State) { r.once.Do(func() { close(r.ready) }) })
}

// Ready is closed once the first authoritative set (possibly empty) has arrived. Callers that
// must not start before they can reach their dependencies wait on it, with a timeout of their own.
func (r *Resolver) Ready() <-chan struct{} { return r.ready }

// Pick returns the next endpoint in round-robin order, or an error wrapping ErrNoEndpoints that
// names the service and why (pending, empty).
func (r *Resolver) Pick() (Endpoint, error) {
	s := r.tracker.State()
	if len(s.Endpoints) == 0 {
		return Endpoint{}, fmt.Errorf("%w for %s (%s)", ErrNoEndpoints, r.service, s.Status)
	}
	i := r.next.Add(1) - 1
	return s.Endpoints[i%uint64(len(s.Endpoints))], nil
}

// State returns the tracker's state: the current endpoints and why, for health pages and logs.
func (r *Resolver) State() State { return r.tracker.State() }
