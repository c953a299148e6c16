// Package discovery finds the endpoints of services and registers this process as one.
//
// A Source watches one service and sends a Snapshot, the complete endpoint set, every time that
// set changes (Static for a fixed list, Consul for Consul's health endpoint). A Tracker applies
// the failure policy to a stream of snapshots and answers "which endpoints do I use now, and why"
// without locks; a Resolver adds round-robin picking on top, for service-to-service calls.
// A Registrar keeps this process registered in Consul, with an HTTP health check, for as long as
// it runs.
//
// The package imports no other project code: the gateway and the backends both use it.
// See docs/discovery.md for the design and the failure policy.
package discovery

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"time"
)

// Source watches the endpoints of one service.
//
// Watch sends a Snapshot on out when it first learns the endpoint set and then whenever that set
// changes or the source's ability to see it changes (see Snapshot.Err). It never closes out; several
// sources may share one channel, the Snapshot names its service. A send blocks until the consumer
// receives or ctx is done, so a consumer that stopped reading never leaks the watcher as long as it
// cancels ctx. Consumers should drain promptly: each Snapshot is complete, so only the newest matters.
//
// Watch returns only when ctx is done, with ctx.Err(). Transient failures (Consul unreachable,
// timeouts, errors from the server) never end it: they are reported as snapshots and retried.
// A Source is safe for concurrent use, but each Watch call runs an independent watch.
type Source interface {
	Watch(ctx context.Context, out chan<- Snapshot) error
}

// Endpoint is one instance of a service.
//
// Endpoints in a sent Snapshot are shared, read-only values: neither the source nor the consumer
// modifies Tags or Meta after the send, so an Endpoint may be copied and read from any goroutine.
type Endpoint struct {
	// ID identifies the instance uniquely within the service (Consul's service ID; for static
	// endpoints "address:port" unless set).
	ID      string
	Address string // host name or IP, without port
	Port    int
	Tags    []string
	Meta    map[string]string
	// Weight is the relative share of traffic this instance should get, at least 1. It comes from
	// Meta["weight"] when that is a positive integer, else from Consul's passing weight, else 1.
	Weight int
}

// HostPort returns "address:port", bracketing IPv6 addresses.
func (e Endpoint) HostPort() string { return net.JoinHostPort(e.Address, strconv.Itoa(e.Port)) }

// Snapshot is what a Source knows about one service at one moment.
//
// Err == nil: Endpoints is the complete, current set of usable (for Consul: passing) instances,
// authoritative even when empty: the source positively says there are zero.
//
// Err != nil: the source could not learn the current set (Consul unreachable, a timeout, an error
// answer). Endpoints is then the last authoritative set this Watch saw (nil if it saw none) and
// must not be read as "zero instances". A failing source sends one such snapshot per failed attempt,
// with backoff between attempts, so consumers can count failures; the next authoritative snapshot
// after a failure is always sent, even when the set did not change, so Err clearing is visible.
//
// A Snapshot and its slices are owned by the receiver after the send and never modified by the
// source; treat them as immutable and share them freely between goroutines.
type Snapshot struct {
	Service   string
	Endpoints []Endpoint // sorted by ID
	Err       error
	// Index is the source's version of the set (Consul's X-Consul-Index; 0 for static sources).
	// It is informational: it can go backwards when Consul restarts.
	Index uint64
	Time  time.Time // when the source produced the snapshot
}

// Authoritative reports whether the snapshot is a fresh, complete set (Err == nil).
func (s Snapshot) Authoritative() bool { return s.Err == nil }

// weightFromMeta returns Meta["weight"] when it is a positive integer, else fallback (at least 1).
func weightFromMeta(meta map[string]string, fallback int) int {
	if w, err := strconv.Atoi(meta["weight"]); err == nil && w > 0 {
		return w
	}
	return max(fallback, 1)
}

func sortEndpoints(eps []Endpoint) {
	slices.SortFunc(eps, func(a, b Endpoint) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
	})
}

// sameEndpoints compares two sorted sets field by field.
func sameEndpoints(a, b []Endpoint) bool {
	return slices.EqualFunc(a, b, func(x, y Endpoint) bool {
		return x.ID == y.ID && x.Address == y.Address && x.Port == y.Port && x.Weight == y.Weight &&
			slices.Equal(x.Tags, y.Tags) && maps.Equal(x.Meta, y.Meta)
	})
}

// cloneEndpoints deep-copies eps, so the copy shares no slice or map with the caller's.
func cloneEndpoints(eps []Endpoint) []Endpoint {
	if eps == nil {
		return nil
	}
	out := make([]Endpoint, len(eps))
	for i, e := range eps {
		e.Tags = slices.Clone(e.Tags)
		e.Meta = maps.Clone(e.Meta)
		out[i] = e
	}
	return out
}

// send delivers s on out unless ctx ends first.
func send(ctx context.Context, out chan<- Snapshot, s Snapshot) error {
	select {
	case out <- s:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func validService(name string) error {
	if name == "" {
		return fmt.Errorf("discovery: service name is empty")
	}
	return nil
}
