package upstream

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/archway-gateway/archway/gateway/balancer"
	"github.com/archway-gateway/archway/gateway/config"
)

// targetKey identifies a Target that can be carried from one snapshot to the next: same
// upstream, same address, same connection settings.
type targetKey struct {
	upstream         string
	addr             string
	connectTimeout   time.Duration
	idleTimeout      time.Duration
	queueTimeout     time.Duration
	maxConns         int
	maxResponseBytes int64
	tls              string // digest of the TLS settings and files; empty for plain HTTP
	protocol         config.UpstreamProtocol
}

// Registry owns every Target. Building a snapshot asks it for targets, which it reuses when
// their key is unchanged; committing a snapshot drains the targets no longer referenced. The
// registry lock is taken only while building and committing, never on the request path.
type Registry struct {
	dial   Dialer
	logger *slog.Logger
	// rootCAs verify h2 targets; nil is the system's roots, which the configuration uses (the
	// package's tests set their own CA).
	rootCAs *x509.CertPool
	ctx     context.Context // owns the health checkers; ends at Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex
	targets map[targetKey]*Target
	live    []*Upstream // the upstreams of the live snapshot, as of the last Commit
}

// TargetSpec is one target to build: from the configuration or from service discovery.
type TargetSpec struct {
	Addr   string
	Weight int
}

// NewRegistry returns an empty registry. dial is nil for TCP.
func NewRegistry(dial Dialer, logger *slog.Logger) *Registry {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Registry{dial: dial, logger: logger, ctx: ctx, cancel: cancel, targets: map[targetKey]*Target{}}
}

// Build makes the Upstream for one upstream section of a config, reusing live targets. The
// targets are the section's own, or discovered: an upstream with a consul section starts with
// the endpoints discovery knows now and follows it through Replace.
func (r *Registry) Build(name string, c *config.Upstream, discovered []TargetSpec) (*Upstream, error) {
	policy, err := balancer.New(c.Balance)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", name, err)
	}
	s := Settings{
		ConnectTimeout:   c.ConnectTimeout.D(),
		IdleTimeout:      c.IdleConnTimeout.D(),
		QueueTimeout:     c.QueueTimeout.D(),
		MaxConns:         c.MaxConnsPerTarget,
		MaxResponseBytes: c.MaxResponseBytes.Bytes(),
		Dial:             r.dial,
		Protocol:         c.Protocol,
		RootCAs:          r.rootCAs,
	}
	if c.TLS != nil {
		tc, key, err := compileTLS(c.TLS, time.Now())
		if err != nil {
			return nil, fmt.Errorf("upstream %s: tls: %w", name, err)
		}
		s.TLS, s.tlsKey = tc, key
		if c.TLS.InsecureSkipVerify {
			r.logger.Warn("upstream TLS certificates are not verified (insecure_skip_verify): anyone on the path can read and alter this traffic", "upstream", name)
		}
	}
	specs := discovered
	if c.Consul == nil {
		specs = make([]TargetSpec, len(c.Targets))
		for i, tc := range c.Targets {
			specs[i] = TargetSpec{Addr: tc.Addr, Weight: tc.Weight}
		}
	}
	u := &Upstream{
		Name:       name,
		Policy:     c.Balance,
		Timeout:    c.Timeout.D(),
		Discovered: c.Consul != nil,
		settings:   s,
		buffering:  newBuffering(&c.Buffering),
		health:     c.HealthCheck,
		policy:     policy,
		passive:    passivePolicy{maxFails: int32(c.MaxFails), failTimeout: int64(c.FailTimeout.D())},
		outlier: outlierPolicy{
			consecutive5xx:     int32(c.Outlier.Consecutive5xx),
			ejectionTime:       int64(c.Outlier.EjectionTime.D()),
			maxEjectionPercent: c.Outlier.MaxEjectionPercent,
		},
	}
	u.budget.credits.Store(retryInitial)
	r.mu.Lock()
	u.set.Store(newEndpointSet(r.acquireAllLocked(u, specs)))
	r.mu.Unlock()
	return u, nil
}

func (r *Registry) acquireAllLocked(u *Upstream, specs []TargetSpec) []*Target {
	targets := make([]*Target, len(specs))
	for i, sp := range specs {
		targets[i] = r.acquireLocked(u.Name, sp.Addr, sp.Weight, u.settings)
		r.configureCheckLocked(targets[i], u.health)
	}
	return targets
}

// Replace gives a live upstream a new endpoint set (service discovery changed it). Targets that
// stay keep their pools and counters; targets that leave drain: requests in flight on them
// finish, their connections close.
func (r *Registry) Replace(u *Upstream, specs []TargetSpec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u.set.Store(newEndpointSet(r.acquireAllLocked(u, specs)))
	r.sweepLocked(r.live)
}

func (r *Registry) acquireLocked(upstream, addr string, weight int, s Settings) *Target {
	key := targetKey{upstream, addr, s.ConnectTimeout, s.IdleTimeout, s.QueueTimeout, s.MaxConns, s.MaxResponseBytes, s.tlsKey, s.Protocol}
	t, ok := r.targets[key]
	if !ok {
		t = newTarget(upstream, addr, weight, s)
		r.targets[key] = t
	}
	t.weight.Store(int32(max(weight, 1)))
	return t
}

// Commit is called once a snapshot holding ups is live: every target those upstreams do not
// reference starts draining and leaves the registry. Requests of the old snapshot still using a
// drained target finish normally; their connections close instead of returning to the pool.
func (r *Registry) Commit(ups []*Upstream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live = ups
	r.sweepLocked(ups)
}

// sweepLocked drains every target the given upstreams do not reference.
func (r *Registry) sweepLocked(ups []*Upstream) {
	live := map[*Target]bool{}
	for _, u := range ups {
		for _, t := range u.Targets() {
			live[t] = true
		}
	}
	for k, t := range r.targets {
		if !live[t] {
			t.stopCheck()
			t.drain()
			delete(r.targets, k)
		}
	}
}

// Run closes idle connections past their idle timeout until ctx ends, then drains everything.
func (r *Registry) Run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			r.Close()
			return
		case now := <-tick.C:
			r.mu.Lock()
			for _, t := range r.targets {
				t.pool.reapIdle(now.UnixNano())
			}
			r.mu.Unlock()
		}
	}
}

// Close stops the health checkers and drains every target.
func (r *Registry) Close() {
	r.cancel()
	r.mu.Lock()
	for _, t := range r.targets {
		t.drain()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
