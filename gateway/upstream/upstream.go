// Package upstream reaches the targets behind the gateway: a lock-free keep-alive pool per
// target, the round trip over fasthttp's request writer and response reader, passive health
// (nginx's max_fails/fail_timeout), and the registry that keeps targets, with their warm
// connections and counters, across config reloads.
package upstream

import (
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/gateway/balancer"
	"github.com/valyala/fasthttp"
)

// Upstream is a named set of targets and the policy that picks among them. It belongs to one
// config snapshot and is immutable but for its endpoint set, which discovery may replace under
// it; readers load the set with one atomic read. Safe for concurrent use.
type Upstream struct {
	Name    string
	Policy  string
	Timeout time.Duration // the default response timeout of routes to this upstream

	policy  balancer.Policy
	passive passivePolicy
	set     atomic.Pointer[endpointSet]
}

// endpointSet is an immutable list of targets with the balancer's view of the same list.
type endpointSet struct {
	targets []*Target
	eps     []balancer.Endpoint
}

func newEndpointSet(targets []*Target) *endpointSet {
	eps := make([]balancer.Endpoint, len(targets))
	for i, t := range targets {
		eps[i] = t
	}
	return &endpointSet{targets: targets, eps: eps}
}

// Targets returns the current targets. The slice is shared and must not be modified.
func (u *Upstream) Targets() []*Target { return u.set.Load().targets }

// Pick chooses a target for a request: key feeds ip_hash, tried excludes targets already tried
// (bit i for the target at index i of the set the index refers to). It returns the target and
// its index, or nil and -1 when none is available.
func (u *Upstream) Pick(key, tried uint64, now int64) (*Target, int) {
	s := u.set.Load()
	i := u.policy.Pick(s.eps, balancer.Choice{Key: key, Tried: tried, Now: now})
	if i < 0 {
		return nil, -1
	}
	return s.targets[i], i
}

// Do runs one round trip to t (a target of this upstream) under the upstream's health policy.
// See Target.Do.
func (u *Upstream) Do(t *Target, req *fasthttp.Request, resp *fasthttp.Response, x *Exchange) error {
	x.policy = u.passive
	return t.Do(req, resp, x)
}
