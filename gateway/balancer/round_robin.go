package balancer

import "sync/atomic"

// RoundRobin cycles through the available endpoints in order, ignoring weights. The zero value
// is ready; one RoundRobin serves one upstream.
type RoundRobin struct {
	next atomic.Uint64
}

var _ Policy = (*RoundRobin)(nil)

// Pick implements Policy.
func (r *RoundRobin) Pick(eps []Endpoint, c Choice) int {
	if len(eps) == 0 {
		return -1
	}
	start := int((r.next.Add(1) - 1) % uint64(len(eps)))
	return probe(eps, start, c)
}
