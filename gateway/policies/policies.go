// Package policies owns every per-route policy of the gateway as one ordered table: each row
// builds one policy (access, CORS, auth, forward auth, rewrite, compression, rate limit, cache,
// split, static files, redirect) from a route's
// configuration, keeps that policy's state across reloads and reports its metrics. The table
// (table.go) is the only place the order of a route's chain is written; server.New gets it as
// server.Options.Policies and refuses a route that asks for a policy no row built.
//
// Adding a policy is adding one row:
//
//  1. In gateway/config, a file for the policy (its struct, defaults and validation), its field
//     on Route, and its name in route_policies.go (a PolicyName constant and the line telling
//     whether a route wrote it).
//  2. In table.go, a Row at the place in the list where requests should meet it: Name (that
//     PolicyName), Has (the route asks for it), Middleware (or Terminal, for a policy that
//     answers instead of the forwarder), and when it keeps state across reloads, Commit, Close
//     and Collector. State the row needs is created in New, next to the list.
//
// A row whose Has is true must build something: a nil middleware counts as not built, and the
// snapshot is refused, so a configured policy is never silently dropped.
package policies

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/archway-gateway/archway/gateway/auth"
	"github.com/archway-gateway/archway/gateway/cache"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/forwardauth"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/archway-gateway/archway/gateway/ratelimit"
	"github.com/archway-gateway/archway/gateway/redisstore"
	"github.com/archway-gateway/archway/gateway/split"
	"github.com/archway-gateway/archway/gateway/static"
	"github.com/prometheus/client_golang/prometheus"
)

// Row is one per-route policy of the table. Exactly one of Middleware and Terminal is set.
// Its functions run when snapshots are built and committed, under the gateway's reload lock.
type Row struct {
	// Name is the routes.yaml field the row builds.
	Name config.PolicyName
	// Has reports whether a route asks for the policy.
	Has func(route *config.Route) bool
	// Middleware builds the policy of a route that has it; the table wraps it around the rows
	// after it.
	Middleware func(route *config.Route, cfg *config.Config) (proxy.Middleware, error)
	// Terminal builds the handler that answers a route's requests in place of the forwarder.
	Terminal func(route *config.Route, cfg *config.Config) (proxy.Handler, error)
	// Commit, when set, gets each configuration that becomes the running one, so the row
	// drops the state of routes that no longer use it.
	Commit func(cfg *config.Config)
	// Close, when set, releases the row's state after the gateway shut down.
	Close func()
	// Collector, when set, reports the row's metrics.
	Collector prometheus.Collector
}

// sweepInterval is how often idle rate limit buckets are dropped.
const sweepInterval = 10 * time.Second

// Policies is the table of one gateway with the state its rows keep. Create it before the
// gateway, pass it as server.Options.Policies, and Close it after the gateway shut down. The
// exported fields are for the admin API and tests.
type Policies struct {
	Tokens *auth.Registry
	Files  *static.Registry
	Limits *ratelimit.Registry
	Caches *cache.Registry
	// Redis is the connection rate limits (scope: redis) and caches (store: redis) share.
	Redis *redisstore.Manager
	// AuthServices is the connection pool forward_auth asks auth services through.
	AuthServices *forwardauth.Registry
	// Splits counts what each split route sent to each of its upstreams.
	Splits *split.Registry

	rows   []Row
	cancel context.CancelFunc
	done   chan struct{}
}

// New builds the gateway's table and starts its rows' background work (JWKS fetchers, bucket
// sweeps, cache refreshes); it stops at Close.
func New(logger *slog.Logger) *Policies {
	if logger == nil {
		logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Policies{
		Tokens:       auth.NewRegistry(ctx, logger, nil),
		Files:        static.NewRegistry(logger),
		Limits:       ratelimit.NewRegistry(),
		Caches:       cache.NewRegistry(ctx, logger),
		Redis:        redisstore.NewManager(ctx, logger, 30*time.Second),
		AuthServices: forwardauth.NewRegistry(),
		Splits:       split.NewRegistry(),
		cancel:       cancel,
		done:         make(chan struct{}),
	}
	p.rows = p.table()
	go func() {
		p.Limits.Run(ctx, sweepInterval)
		close(p.done)
	}()
	return p
}

// Route builds route's chain: next (the forwarder or a direct response), replaced by the
// terminal row the route asks for, wrapped in the middleware rows it asks for, the first row
// outermost. It implements server.Policies.
func (p *Policies) Route(route *config.Route, cfg *config.Config, next proxy.Handler) (proxy.Handler, []config.PolicyName, error) {
	var built []config.PolicyName
	var mws []proxy.Middleware
	for _, row := range p.rows {
		if !row.Has(route) {
			continue
		}
		switch {
		case row.Terminal != nil:
			h, err := row.Terminal(route, cfg)
			if err != nil {
				return nil, nil, err
			}
			if h == nil {
				continue
			}
			next = h
		case row.Middleware != nil:
			mw, err := row.Middleware(route, cfg)
			if err != nil {
				return nil, nil, err
			}
			if mw == nil {
				continue
			}
			mws = append(mws, mw)
		default:
			continue
		}
		built = append(built, row.Name)
	}
	return proxy.Chain(next, mws...), built, nil
}

// Commit drops the state of routes cfg no longer has and retires unused Redis connections. It
// implements server.Policies.
func (p *Policies) Commit(cfg *config.Config) {
	for _, row := range p.rows {
		if row.Commit != nil {
			row.Commit(cfg)
		}
	}
	p.Redis.Commit(cfg.Redis)
}

// Register adds the rows' metrics and the shared Redis connection's to reg.
func (p *Policies) Register(reg prometheus.Registerer) error {
	for _, row := range p.rows {
		if row.Collector == nil {
			continue
		}
		if err := reg.Register(row.Collector); err != nil {
			return err
		}
	}
	return reg.Register(redisCollector{p.Redis})
}

// Close stops background work, waits for it, and releases every row's state, last row first.
func (p *Policies) Close() {
	p.cancel()
	<-p.done
	for _, row := range slices.Backward(p.rows) {
		if row.Close != nil {
			row.Close()
		}
	}
	p.Redis.Close()
}
