// Package balancer holds the target selection policies. A policy is one method, Pick, over the
// endpoints of an upstream; it reads their live state through the Endpoint interface and keeps
// whatever state it needs in atomics, so Pick takes no locks and allocates nothing in steady state.
//
// The package is a leaf: it imports no other Archway package.
package balancer

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
)

// Endpoint is what a policy reads about one target. Implementations are safe for concurrent use
// and cheap to call: Pick calls them on every request.
type Endpoint interface {
	// InFlight is the number of requests (and open tunnels) the target is serving now.
	InFlight() int64
	// Weight is the target's relative capacity, at least 1.
	Weight() int
	// Available reports whether the target may receive traffic at time now (unix nanoseconds):
	// not ejected by passive or active health checking, not draining.
	Available(now int64) bool
	// ID is a stable hash of the target's identity (its address), for consistent hashing.
	ID() uint64
}

// Choice describes the request a target is picked for.
type Choice struct {
	// Key is a hash of the request attribute a sticky policy keys on (see Keyer); 0 otherwise.
	Key uint64
	// Tried has bit i set when endpoint i was already tried for this request; a policy never
	// picks it again. Endpoints beyond the 64th cannot be excluded.
	Tried uint64
	// Now is the current time in unix nanoseconds.
	Now int64
}

// Keyer is a policy that keeps a client on one endpoint: it derives Choice.Key from the
// client's address itself, so callers need not know which policy keys on what. A policy that
// does not implement it gets Choice.Key 0.
type Keyer interface {
	Key(client netip.Addr) uint64
}

// Policy picks the endpoint for a request. Pick returns an index into eps, or -1 when no
// endpoint is available and untried. Implementations are safe for concurrent use.
type Policy interface {
	Pick(eps []Endpoint, c Choice) int
}

// Names lists the policies New accepts.
var Names = []string{"least_conn", "round_robin", "random", "weighted", "ip_hash"}

// New returns a fresh policy by its routes.yaml name.
func New(name string) (Policy, error) {
	switch name {
	case "least_conn":
		return &LeastConn{}, nil
	case "round_robin":
		return &RoundRobin{}, nil
	case "random":
		return &Random{}, nil
	case "weighted":
		return &Weighted{}, nil
	case "ip_hash":
		return &IPHash{}, nil
	}
	return nil, fmt.Errorf("unknown balance policy %q", name)
}

// usable reports whether endpoint i may be picked.
func usable(eps []Endpoint, i int, c Choice) bool {
	if i < 64 && c.Tried&(1<<uint(i)) != 0 {
		return false
	}
	return eps[i].Available(c.Now)
}

// probe returns the first usable endpoint at or after start, wrapping around, or -1.
func probe(eps []Endpoint, start int, c Choice) int {
	n := len(eps)
	for k := 0; k < n; k++ {
		i := start + k
		if i >= n {
			i -= n
		}
		if usable(eps, i, c) {
			return i
		}
	}
	return -1
}

// randN is a lock-free random number in [0, n): math/rand/v2's top-level source is per-thread.
func randN(n int) int { return rand.IntN(n) }
