// Package upstream reaches the targets behind the gateway: a lock-free keep-alive pool per
// target, the round trip over fasthttp's request writer and response reader, passive health
// (nginx's max_fails/fail_timeout), and the registry that keeps targets, with their warm
// connections and counters, across config reloads.
package upstream

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/gateway/balancer"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/valyala/fasthttp"
)

// Upstream is a named set of targets and the policy that picks among them. It belongs to one
// config snapshot and is immutable but for its endpoint set, which discovery may replace under
// it; readers load the set with one atomic read. Safe for concurrent use.
type Upstream struct {
	Name    string
	Policy  string
	Timeout time.Duration // the default response timeout of routes to this upstream
	// Discovered is set when service discovery supplies the targets.
	Discovered bool

	settings  Settings            // how targets are reached, for targets added by discovery
	buffering *Buffering          // response buffering (buffer.go); nil: off
	health    *config.HealthCheck // active health checking of those targets

	policy  balancer.Policy
	passive passivePolicy
	outlier outlierPolicy
	budget  retryBudget
	set     atomic.Pointer[endpointSet]
}

type outlierPolicy struct {
	consecutive5xx     int32 // 0: off
	ejectionTime       int64 // nanoseconds
	maxEjectionPercent int
}

// ObserveStatus feeds outlier detection with the status a target answered: a run of
// consecutive_5xx server errors ejects it for ejection_time, unless that would leave more than
// max_ejection_percent of the upstream's targets ejected. A target that fails fast would
// otherwise attract least_conn traffic precisely because it is quick.
func (u *Upstream) ObserveStatus(t *Target, code int, now int64) {
	if u.outlier.consecutive5xx == 0 {
		return
	}
	if code < 500 {
		if t.consecutive5xx.Load() != 0 { // read first: most answers are not 5xx, keep the line clean
			t.consecutive5xx.Store(0)
		}
		return
	}
	if t.consecutive5xx.Add(1) < u.outlier.consecutive5xx {
		return
	}
	targets := u.Targets()
	ejected := 0
	for _, o := range targets {
		if o != t && now < o.ejectedUntil.Load() {
			ejected++
		}
	}
	if (ejected+1)*100 > u.outlier.maxEjectionPercent*len(targets) {
		t.consecutive5xx.Store(0) // keep it in: ejecting would leave too few targets
		return
	}
	t.ejectFor(now, u.outlier.ejectionTime)
}

// retryBudget caps retries at a fifth of the requests: every request of a retrying route earns
// one credit, every retry costs five. A small initial balance lets the first failures retry.
// Lock-free; credits are capped so a long quiet spell cannot bank a retry storm.
type retryBudget struct {
	credits atomic.Int64
}

const (
	retryCost       = 5
	retryMaxCredits = 1000
	retryInitial    = 50
)

// Earn records a request that could be retried.
func (u *Upstream) Earn() {
	if u.budget.credits.Load() < retryMaxCredits {
		u.budget.credits.Add(1)
	}
}

// Spend reports whether a retry fits the budget, and takes its cost if so.
func (u *Upstream) Spend() bool {
	for {
		c := u.budget.credits.Load()
		if c < retryCost {
			return false
		}
		if u.budget.credits.CompareAndSwap(c, c-retryCost) {
			return true
		}
	}
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

// Key is the Choice.Key of a request from client: what the upstream's policy keys on (see
// balancer.Keyer), or 0.
func (u *Upstream) Key(client netip.Addr) uint64 {
	if k, ok := u.policy.(balancer.Keyer); ok {
		return k.Key(client)
	}
	return 0
}

// Pick chooses a target for a request: key is Key's, tried excludes targets already tried
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
func (u *Upstream) Do(t *Target, req *fasthttp.Request, resp *fasthttp.Response, x *RoundTrip) error {
	x.policy = u.passive
	x.buffering = u.buffering
	return t.Do(req, resp, x)
}
