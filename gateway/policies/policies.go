// Package policies wires the per-route policies (rate limits, response cache) into the gateway:
// it owns their state across reloads, the Redis connection they share and their background
// goroutines, and gives the server its middleware factories.
//
// Order on a route, outermost first: authentication (when it exists) → rate limit → cache →
// forwarder. The limit runs after authentication so jwt:<claim> keys see verified claims, and
// before the cache so cache hits count against the limit too (a client's budget does not
// depend on what happens to be cached). The cache runs after authentication so a cached
// response is never served to a request that authentication would refuse.
package policies

import (
	"context"
	"log/slog"
	"time"

	"github.com/archway-gateway/archway/gateway/cache"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/archway-gateway/archway/gateway/ratelimit"
	"github.com/archway-gateway/archway/gateway/redisstore"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/prometheus/client_golang/prometheus"
)

// sweepInterval is how often idle rate limit buckets are dropped.
const sweepInterval = 10 * time.Second

// Policies holds the policies' state for one gateway. Create it before the gateway, pass
// Options into server.Options, and Close it after the gateway shut down.
type Policies struct {
	Limits *ratelimit.Registry
	Caches *cache.Registry
	Redis  *redisstore.Manager

	cancel context.CancelFunc
	done   chan struct{}
}

// New starts the policies' background work; it stops at Close.
func New(logger *slog.Logger) *Policies {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Policies{
		Limits: ratelimit.NewRegistry(),
		Caches: cache.NewRegistry(ctx, logger),
		Redis:  redisstore.NewManager(ctx, logger, 30*time.Second),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go func() {
		p.Limits.Run(ctx, sweepInterval)
		close(p.done)
	}()
	return p
}

// Options adds the policies to gateway options: their middlewares (after any already there,
// such as authentication) and the commit hook that drops the state of removed routes.
func (p *Policies) Options(o *server.Options) {
	o.Middlewares = append(o.Middlewares, p.RateLimit, p.Cache)
	prev := o.OnCommit
	o.OnCommit = func(cfg *config.Config) {
		if prev != nil {
			prev(cfg)
		}
		p.Commit(cfg)
	}
}

// RateLimit is the server.MiddlewareFactory of rate_limit.
func (p *Policies) RateLimit(route *config.Route, cfg *config.Config) (proxy.Middleware, error) {
	if route.RateLimit == nil {
		return nil, nil
	}
	var store *redisstore.Store
	if route.RateLimit.Scope == "redis" {
		store = p.Redis.Get(cfg.Redis)
	}
	return p.Limits.Middleware(route, store), nil
}

// Cache is the server.MiddlewareFactory of cache.
func (p *Policies) Cache(route *config.Route, cfg *config.Config) (proxy.Middleware, error) {
	if route.Cache == nil {
		return nil, nil
	}
	var store *redisstore.Store
	if route.Cache.Store == "redis" {
		store = p.Redis.Get(cfg.Redis)
	}
	return p.Caches.Middleware(route, store), nil
}

// Commit drops the state of routes cfg no longer has and retires unused Redis connections.
func (p *Policies) Commit(cfg *config.Config) {
	p.Limits.Commit(cfg)
	p.Caches.Commit(cfg)
	p.Redis.Commit(cfg.Redis)
}

// Register adds the policies' metrics to reg.
func (p *Policies) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{p.Limits, p.Caches, redisCollector{p.Redis}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Close stops background work, waits for it, and closes Redis connections.
func (p *Policies) Close() {
	p.cancel()
	<-p.done
	p.Caches.Wait()
	p.Redis.Close()
}

var (
	descBreaker  = prometheus.NewDesc("archway_redis_breaker_open", "1 while the Redis breaker is open and policies use their fallback without trying Redis.", nil, nil)
	descCalls    = prometheus.NewDesc("archway_redis_calls_total", "Calls made to Redis by policies.", nil, nil)
	descFailures = prometheus.NewDesc("archway_redis_failures_total", "Calls to Redis that failed or timed out.", nil, nil)
	descSkipped  = prometheus.NewDesc("archway_redis_skipped_total", "Calls to Redis skipped because the breaker was open.", nil, nil)
	descOpened   = prometheus.NewDesc("archway_redis_breaker_opened_total", "Times the Redis breaker opened.", nil, nil)
)

type redisCollector struct{ m *redisstore.Manager }

func (redisCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBreaker, descCalls, descFailures, descSkipped, descOpened} {
		ch <- d
	}
}

func (c redisCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.Live()
	if s == nil {
		return
	}
	open := 0.0
	if s.BreakerOpen() {
		open = 1
	}
	ch <- prometheus.MustNewConstMetric(descBreaker, prometheus.GaugeValue, open)
	ch <- prometheus.MustNewConstMetric(descCalls, prometheus.CounterValue, float64(s.Calls.Load()))
	ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(s.Failures.Load()))
	ch <- prometheus.MustNewConstMetric(descSkipped, prometheus.CounterValue, float64(s.Skipped.Load()))
	ch <- prometheus.MustNewConstMetric(descOpened, prometheus.CounterValue, float64(s.Opened.Load()))
}
