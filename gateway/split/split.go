// Package split is the split policy of a route: weighted traffic between upstreams (a canary
// release at 95/5), a header or cookie that selects one upstream outright, and stickiness by a
// hash of a cookie or of the client address. It runs just before the forwarder and tells it the
// upstream through Exchange.Upstream.
//
// Without stickiness the requests are spread by a counter over a fixed sequence of slots in
// which every upstream holds exactly its weight, interleaved (nginx's smooth weighted round
// robin), so any run of requests as long as the sequence lands exactly on the weights: the share
// is a property of the code, not of chance. A sticky request takes the slot its key hashes to.
package split

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/archway-gateway/archway/gateway/balancer"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/prometheus/client_golang/prometheus"
)

// Split chooses an upstream for each request of one route. Built once per snapshot; safe for
// concurrent use (its only mutable state is atomic).
type Split struct {
	entries []entry
	// slots is the sequence of entry indexes, each entry appearing weight/gcd times.
	slots  []uint16
	next   atomic.Uint64
	sticky stickyKind
	cookie []byte
}

type stickyKind uint8

const (
	stickyNone stickyKind = iota
	stickyClientIP
	stickyCookie
)

type entry struct {
	upstream string
	header   []byte // match on this header, or
	cookie   []byte // on this cookie,
	value    []byte // having exactly this value
	served   *atomic.Uint64
}

// New compiles a route's split. served returns the counter of requests sent to an upstream;
// nil counts nothing.
func New(c *config.Split, served func(upstream string) *atomic.Uint64) (*Split, error) {
	if len(c.Upstreams) > 1<<16 {
		return nil, fmt.Errorf("split: %d upstreams, at most %d", len(c.Upstreams), 1<<16)
	}
	s := &Split{}
	weights := make([]int, len(c.Upstreams))
	for i, e := range c.Upstreams {
		en := entry{upstream: e.Upstream, served: new(atomic.Uint64)}
		if served != nil {
			en.served = served(e.Upstream)
		}
		if m := e.Match; m != nil {
			en.header, en.cookie, en.value = []byte(m.Header), []byte(m.Cookie), []byte(m.Value)
		}
		s.entries = append(s.entries, en)
		weights[i] = e.Weight
	}
	s.slots = smoothSequence(weights)
	if len(s.slots) == 0 {
		return nil, fmt.Errorf("split: the weights add up to 0")
	}
	switch kind, arg := c.StickyKind(); kind {
	case config.StickyClientIP:
		s.sticky = stickyClientIP
	case config.StickyCookie:
		s.sticky, s.cookie = stickyCookie, []byte(arg)
	}
	return s, nil
}

// smoothSequence returns nginx's smooth weighted round robin over weights reduced by their
// greatest common divisor: each index appears weight/gcd times, spread out (95/5 is 19 of one,
// then the other, interleaved, in 20 slots).
func smoothSequence(weights []int) []uint16 {
	g := 0
	for _, w := range weights {
		g = gcd(g, w)
	}
	if g == 0 {
		return nil
	}
	total := 0
	for _, w := range weights {
		total += w / g
	}
	current := make([]int, len(weights))
	seq := make([]uint16, 0, total)
	for range total {
		best := -1
		for i, w := range weights {
			current[i] += w / g
			if best < 0 || current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		seq = append(seq, uint16(best))
	}
	return seq
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Choose returns the index of the entry (in config order) that serves x: the first whose match
// x satisfies, else the slot of x's sticky key, else the next slot of the counter.
func (s *Split) Choose(x *proxy.Exchange) int {
	hdr := &x.Ctx.Request.Header
	for i := range s.entries {
		e := &s.entries[i]
		switch {
		case len(e.header) > 0:
			if string(hdr.PeekBytes(e.header)) == string(e.value) {
				return i
			}
		case len(e.cookie) > 0:
			if string(hdr.CookieBytes(e.cookie)) == string(e.value) {
				return i
			}
		}
	}
	n := uint64(len(s.slots))
	switch s.sticky {
	case stickyClientIP:
		a := x.ClientIP.As16()
		return int(s.slots[balancer.HashBytes(a[:])%n])
	case stickyCookie:
		if v := hdr.CookieBytes(s.cookie); len(v) > 0 {
			return int(s.slots[balancer.HashBytes(v)%n])
		}
	}
	return int(s.slots[(s.next.Add(1)-1)%n])
}

// Upstream is the name of entry i's upstream.
func (s *Split) Upstream(i int) string { return s.entries[i].upstream }

type handler struct {
	split *Split
	next  proxy.Handler
}

var _ proxy.Handler = (*handler)(nil)

// Serve implements proxy.Handler.
func (h *handler) Serve(x *proxy.Exchange) {
	e := &h.split.entries[h.split.Choose(x)]
	// The snapshot that holds this route holds its upstreams: validation saw to that.
	if u := x.Snapshot.Upstreams[e.upstream]; u != nil {
		x.Upstream = u
	}
	e.served.Add(1)
	h.next.Serve(x)
}

// Registry keeps each route's per-upstream request counters across reloads and exports them as
// archway_split_requests_total. Safe for concurrent use; requests touch only the counters.
type Registry struct {
	mu     sync.Mutex
	served map[key]*atomic.Uint64
}

type key struct{ route, upstream string }

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{served: map[key]*atomic.Uint64{}} }

// Middleware is the factory of the split policy: nil when the route has none.
func (r *Registry) Middleware(route *config.Route, _ *config.Config) (proxy.Middleware, error) {
	if route.Split == nil {
		return nil, nil
	}
	s, err := New(route.Split, func(upstream string) *atomic.Uint64 { return r.counter(route.Name, upstream) })
	if err != nil {
		return nil, err
	}
	return func(next proxy.Handler) proxy.Handler { return &handler{split: s, next: next} }, nil
}

func (r *Registry) counter(route, upstream string) *atomic.Uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := key{route, upstream}
	c := r.served[k]
	if c == nil {
		c = new(atomic.Uint64)
		r.served[k] = c
	}
	return c
}

// Served returns how many requests of route the split sent to upstream.
func (r *Registry) Served(route, upstream string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.served[key{route, upstream}]; c != nil {
		return c.Load()
	}
	return 0
}

// Commit drops the counters of splits cfg no longer has.
func (r *Registry) Commit(cfg *config.Config) {
	live := map[key]bool{}
	for _, rc := range cfg.Routes {
		if rc.Split != nil {
			for _, e := range rc.Split.Upstreams {
				live[key{rc.Name, e.Upstream}] = true
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.served {
		if !live[k] {
			delete(r.served, k)
		}
	}
}

var descServed = prometheus.NewDesc("archway_split_requests_total",
	"Requests a route's split sent to each of its upstreams.", []string{"route", "upstream"}, nil)

// Describe implements prometheus.Collector.
func (r *Registry) Describe(ch chan<- *prometheus.Desc) { ch <- descServed }

// Collect implements prometheus.Collector.
func (r *Registry) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, c := range r.served {
		ch <- prometheus.MustNewConstMetric(descServed, prometheus.CounterValue, float64(c.Load()), k.route, k.upstream)
	}
}
