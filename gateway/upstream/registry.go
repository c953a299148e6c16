package upstream

import (
	"context"
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
}

// Registry owns every Target. Building a snapshot asks it for targets, which it reuses when
// their key is unchanged; committing a snapshot drains the targets no longer referenced. The
// registry lock is taken only while building and committing, never on the request path.
type Registry struct {
	dial   Dialer
	logger *slog.Logger
	ctx    context.Context // owns the health checkers; ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	targets map[targetKey]*Target
}

// NewRegistry returns an empty registry. dial is nil for TCP.
func NewRegistry(dial Dialer, logger *slog.Logger) *Registry {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Registry{dial: dial, logger: logger, ctx: ctx, cancel: cancel, targets: map[targetKey]*Target{}}
}

// Build makes the Upstream for one upstream section of a config, reusing live targets.
func (r *Registry) Build(name string, c *config.Upstream) (*Upstream, error) {
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
	}
	targets := make([]*Target, len(c.Targets))
	r.mu.Lock()
	for i, tc := range c.Targets {
		targets[i] = r.acquireLocked(name, tc.Addr, tc.Weight, s)
		r.configureCheckLocked(targets[i], c.HealthCheck)
	}
	r.mu.Unlock()
	u := &Upstream{
		Name:    name,
		Policy:  c.Balance,
		Timeout: c.Timeout.D(),
		policy:  policy,
		passive: passivePolicy{maxFails: int32(c.MaxFails), failTimeout: int64(c.FailTimeout.D())},
		outlier: outlierPolicy{
			consecutive5xx:     int32(c.Outlier.Consecutive5xx),
			ejectionTime:       int64(c.Outlier.EjectionTime.D()),
			maxEjectionPercent: c.Outlier.MaxEjectionPercent,
		},
	}
	u.budget.credits.Store(retryInitial)
	u.set.Store(newEndpointSet(targets))
	return u, nil
}

func (r *Registry) acquireLocked(upstream, addr string, weight int, s Settings) *Target {
	key := targetKey{upstream, addr, s.ConnectTimeout, s.IdleTimeout, s.QueueTimeout, s.MaxConns, s.MaxResponseBytes}
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
	live := map[*Target]bool{}
	for _, u := range ups {
		for _, t := range u.Targets() {
			live[t] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, t := range r.targets {
		if !live[t] {
			t.stopCheck()
			t.pool.drain()
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
		t.pool.drain()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
