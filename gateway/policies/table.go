package policies

import (
	"github.com/archway-gateway/archway/gateway/compress"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/cors"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/archway-gateway/archway/gateway/redisstore"
)

// table is every per-route policy in the order a request meets them, outermost first. This is
// the one place that order is written:
//
//   - CORS first: it answers preflights (which carry no credentials) before authentication, and
//     its headers reach the browser on every answer, a 401 or 429 included.
//   - Authentication before anything keyed by a claim (jwt:<claim> rate limit keys) and before
//     the cache, so a cached response is never served to a request it would refuse.
//   - Compression before rate limit and cache, so cached bodies stay identity-encoded and one
//     entry serves every client.
//   - Rate limit before the cache, so cache hits count against the limit too (a client's budget
//     does not depend on what happens to be cached).
//   - Static files are the terminal: they answer in place of the forwarder, inside every
//     middleware above.
func (p *Policies) table() []Row {
	return []Row{
		{
			Name:       config.PolicyCORS,
			Has:        func(r *config.Route) bool { return r.CORS != nil },
			Middleware: cors.Middleware,
		},
		{
			Name:       config.PolicyAuth,
			Has:        func(r *config.Route) bool { return r.Auth != nil },
			Middleware: p.Tokens.Middleware,
			Commit:     p.Tokens.Commit,
			Close:      p.Tokens.Close,
		},
		{
			Name:       config.PolicyCompression,
			Has:        func(r *config.Route) bool { return r.Compression != nil },
			Middleware: compress.Middleware,
		},
		{
			Name:       config.PolicyRateLimit,
			Has:        func(r *config.Route) bool { return r.RateLimit != nil },
			Middleware: p.rateLimit,
			Commit:     p.Limits.Commit,
			Collector:  p.Limits,
		},
		{
			Name:       config.PolicyCache,
			Has:        func(r *config.Route) bool { return r.Cache != nil },
			Middleware: p.cache,
			Commit:     p.Caches.Commit,
			Close:      p.Caches.Wait, // the refreshes end with the context Close cancels first
			Collector:  p.Caches,
		},
		{
			Name:     config.PolicyStatic,
			Has:      func(r *config.Route) bool { return r.Static != nil },
			Terminal: p.Files.Handler,
			Commit:   p.Files.Commit,
			Close:    p.Files.Close,
		},
	}
}

func (p *Policies) rateLimit(route *config.Route, cfg *config.Config) (proxy.Middleware, error) {
	var store *redisstore.Store
	if route.RateLimit.Scope == "redis" {
		store = p.Redis.Get(cfg.Redis)
	}
	return p.Limits.Middleware(route, store), nil
}

func (p *Policies) cache(route *config.Route, cfg *config.Config) (proxy.Middleware, error) {
	var store *redisstore.Store
	if route.Cache.Store == "redis" {
		store = p.Redis.Get(cfg.Redis)
	}
	return p.Caches.Middleware(route, store), nil
}
