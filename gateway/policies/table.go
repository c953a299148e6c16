package policies

import (
	"github.com/archway-gateway/archway/gateway/access"
	"github.com/archway-gateway/archway/gateway/compress"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/cors"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/archway-gateway/archway/gateway/redisstore"
	"github.com/archway-gateway/archway/gateway/rewrite"
)

// table is every per-route policy in the order a request meets them, outermost first. This is
// the one place that order is written:
//
//   - Access first of all: a refused address meets nothing else (nginx's allow and deny run in
//     its access phase, before anything else of the request).
//   - CORS next: it answers preflights (which carry no credentials) before authentication, and
//     its headers reach the browser on every answer, a 401 or 429 included.
//   - Authentication before anything keyed by a claim (jwt:<claim> rate limit keys) and before
//     the cache, so a cached response is never served to a request it would refuse.
//   - Forward auth with authentication: after CORS (a preflight carries no credentials) and
//     before everything keyed by an identity; the auth service sees the path as the client sent it.
//   - Rewrite before the policies that key on the path (rate limit, cache): they see the path
//     the upstream gets.
//   - Compression before rate limit and cache, so cached bodies stay identity-encoded and one
//     entry serves every client.
//   - Rate limit before the cache, so cache hits count against the limit too (a client's budget
//     does not depend on what happens to be cached).
//   - Split last of the middlewares: it only chooses the upstream the forwarder uses, so a
//     request any policy above answered or refused is not counted against an upstream.
//   - Static files and redirects are terminals: they answer in place of the forwarder, inside
//     every middleware above (an access list applies to a redirect too).
func (p *Policies) table() []Row {
	return []Row{
		{
			Name:       config.PolicyAccess,
			Has:        func(r *config.Route) bool { return r.Access != nil },
			Middleware: access.Middleware,
		},
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
			Name:       config.PolicyForwardAuth,
			Has:        func(r *config.Route) bool { return r.ForwardAuth != nil },
			Middleware: p.AuthServices.Middleware,
			Close:      p.AuthServices.Close,
		},
		{
			Name:       config.PolicyRewrite,
			Has:        func(r *config.Route) bool { return r.Rewrite != nil },
			Middleware: rewrite.RewriteMiddleware,
		},
		{
			Name:       config.PolicyCompression,
			Has:        func(r *config.Route) bool { return r.Compression != nil },
			Middleware: compress.Middleware,
		},
		// Split before the cache: the cache keys an entry by the upstream the split chose, so a
		// canary's response never reaches a client the split sends to the stable upstream.
		{
			Name:       config.PolicySplit,
			Has:        func(r *config.Route) bool { return r.Split != nil },
			Middleware: p.Splits.Middleware,
			Commit:     p.Splits.Commit,
			Collector:  p.Splits,
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
		{
			Name:     config.PolicyRedirect,
			Has:      func(r *config.Route) bool { return r.Redirect != nil },
			Terminal: rewrite.RedirectHandler,
		},
	}
}

func (p *Policies) rateLimit(route *config.Route, cfg *config.Config) (proxy.Middleware, error) {
	var store *redisstore.Store
	if route.RateLimit.Scope == config.ScopeRedis {
		store = p.Redis.Get(cfg.Redis)
	}
	return p.Limits.Middleware(route, store), nil
}

func (p *Policies) cache(route *config.Route, cfg *config.Config) (proxy.Middleware, error) {
	var store *redisstore.Store
	if route.Cache.Store == config.CacheRedis {
		store = p.Redis.Get(cfg.Redis)
	}
	return p.Caches.Middleware(route, store), nil
}
