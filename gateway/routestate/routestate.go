// Package routestate keeps state per route across configuration snapshots: rate-limit buckets,
// cache stores, request counters. A reload that keeps a route keeps its state; a reload that
// drops it forgets it, and collectors then stop reporting it.
//
// The package imports no other Archway package.
package routestate

import (
	"sync"
	"sync/atomic"
)

// Registry holds one T per route name. Use and Commit run while snapshots are built and
// committed (under a lock); Live and Lookup are for collectors and admin calls. Safe for
// concurrent use.
type Registry[T any] struct {
	mu     sync.Mutex
	routes map[string]T
	live   atomic.Pointer[[]T]
}

// New returns an empty registry.
func New[T any]() *Registry[T] { return &Registry[T]{routes: map[string]T{}} }

// Use returns the state of the named route: made by create the first time, and otherwise
// brought up to date by update (when not nil) with the route's new settings. Both run under the
// registry's lock.
func (r *Registry[T]) Use(name string, create func() T, update func(T)) T {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.routes[name]
	if !ok {
		st = create()
		r.routes[name] = st
	} else if update != nil {
		update(st)
	}
	return st
}

// Commit keeps the states of the named routes, in that order, as the live ones and forgets the
// state of every other route.
func (r *Registry[T]) Commit(names []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	keep := make(map[string]bool, len(names))
	live := make([]T, 0, len(names))
	for _, name := range names {
		if st, ok := r.routes[name]; ok && !keep[name] {
			live = append(live, st)
		}
		keep[name] = true
	}
	for name := range r.routes {
		if !keep[name] {
			delete(r.routes, name)
		}
	}
	r.live.Store(&live)
}

// Live returns the states of the routes of the last Commit. The slice is shared: read only.
func (r *Registry[T]) Live() []T {
	if l := r.live.Load(); l != nil {
		return *l
	}
	return nil
}

// Lookup returns the named route's state, if the registry holds it.
func (r *Registry[T]) Lookup(name string) (T, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.routes[name]
	return st, ok
}

// All returns every state the registry holds, live or not yet committed.
func (r *Registry[T]) All() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]T, 0, len(r.routes))
	for _, st := range r.routes {
		out = append(out, st)
	}
	return out
}
