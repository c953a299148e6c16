package config

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

var (
	redisModes   = []string{"single", "cluster"}
	limitScopes  = []string{"local", "redis"}
	storeErrors  = []string{"allow", "deny"}
	cacheStores  = []string{"memory", "redis"}
	limitKeyHelp = "client_ip, route, header:<Name> or jwt:<claim>"
)

func (v *validator) redis() {
	r := &v.c.Redis
	if !r.Enabled() {
		if _, written := v.c.positions["redis"]; written {
			v.errorf("redis.addrs", "at least one host:port is required")
		}
		return
	}
	for i, a := range r.Addrs {
		v.targetAddr(fmt.Sprintf("redis.addrs[%d]", i), a)
	}
	if !slices.Contains(redisModes, r.Mode) {
		v.errorf("redis.mode", "must be single or cluster, got %q%s", r.Mode, suggest(r.Mode, redisModes))
	} else if r.Mode == "single" && len(r.Addrs) > 1 {
		v.errorf("redis.addrs", "mode single takes one address; set mode: cluster for several")
	}
	if r.Mode == "cluster" && r.DB != 0 {
		v.errorf("redis.db", "a Redis cluster has only database 0")
	}
	if r.DB < 0 || r.DB > 15 {
		v.errorf("redis.db", "must be between 0 and 15, got %d", r.DB)
	}
	if r.Timeout <= 0 || r.Timeout.D() > 10*time.Second {
		v.errorf("redis.timeout", "must be greater than 0 and at most 10s (requests wait this long), got %s", time.Duration(r.Timeout))
	}
	if r.PoolSize < 0 {
		v.errorf("redis.pool_size", "must be 0 (the client's default) or more, got %d", r.PoolSize)
	}
	if r.BreakerFailures < 1 {
		v.errorf("redis.breaker_failures", "must be 1 or more, got %d", r.BreakerFailures)
	}
	v.positive("redis.breaker_probe", r.BreakerProbe)
	if strings.ContainsAny(r.KeyPrefix, "{}*?[] \r\n") {
		v.errorf("redis.key_prefix", "must not contain braces, glob characters or spaces, got %q", r.KeyPrefix)
	}
}

func (v *validator) rateLimit(p string, rl *RateLimit) {
	if rl == nil {
		return
	}
	if rl.Rate.IsZero() {
		v.errorf(p+".rate", "required (examples: 10/s, 600/m)")
	}
	if rl.Burst < 1 || rl.Burst > 1_000_000 {
		v.errorf(p+".burst", "must be between 1 and 1000000, got %d", rl.Burst)
	}
	switch kind, arg, _ := strings.Cut(rl.Key, ":"); kind {
	case "client_ip", "route":
		if arg != "" {
			v.errorf(p+".key", "%s takes no argument; keys are %s", kind, limitKeyHelp)
		}
	case "header":
		if !validHeaderName(arg) {
			v.errorf(p+".key", "header:<Name> needs a valid header name, got %q", rl.Key)
		}
	case "jwt":
		if arg == "" || strings.ContainsAny(arg, " \t\r\n") {
			v.errorf(p+".key", "jwt:<claim> needs a claim name, got %q", rl.Key)
		}
	default:
		v.errorf(p+".key", "unknown key %q; one of %s", rl.Key, limitKeyHelp)
	}
	if !slices.Contains(limitScopes, rl.Scope) {
		v.errorf(p+".scope", "must be local or redis, got %q%s", rl.Scope, suggest(rl.Scope, limitScopes))
	} else if rl.Scope == "redis" && !v.c.Redis.Enabled() {
		v.errorf(p+".scope", "scope redis needs the top-level redis section (redis.addrs)")
	}
	if !slices.Contains(storeErrors, rl.OnStoreError) {
		v.errorf(p+".on_store_error", "must be allow or deny, got %q%s", rl.OnStoreError, suggest(rl.OnStoreError, storeErrors))
	}
	if rl.MaxKeys < 1 || rl.MaxKeys > 10_000_000 {
		v.errorf(p+".max_keys", "must be between 1 and 10000000, got %d", rl.MaxKeys)
	}
}

func (v *validator) cache(p string, r *Route) {
	c := r.Cache
	if c == nil {
		return
	}
	if len(r.Match.Methods) > 0 && !slices.Contains(r.Match.Methods, "GET") && !slices.Contains(r.Match.Methods, "HEAD") {
		v.errorf(p, "the route matches no GET or HEAD requests, the only ones cached")
	}
	if c.TTL <= 0 {
		v.errorf(p+".ttl", "must be greater than 0")
	}
	if c.MaxBytes <= 0 {
		v.errorf(p+".max_bytes", "must be greater than 0")
	}
	if c.MaxEntryBytes <= 0 {
		v.errorf(p+".max_entry_bytes", "must be greater than 0")
	} else if c.MaxBytes > 0 && c.MaxEntryBytes > c.MaxBytes/4 {
		v.errorf(p+".max_entry_bytes", "%s is over a quarter of max_bytes (%s); a few entries would fill the cache", c.MaxEntryBytes, c.MaxBytes)
	}
	seen := map[string]bool{}
	for i, h := range c.Vary {
		hp := fmt.Sprintf("%s.vary[%d]", p, i)
		switch {
		case !validHeaderName(h):
			v.errorf(hp, "invalid header name %q", h)
		case seen[h]:
			v.errorf(hp, "duplicate header %q", h)
		case h == "Authorization" || h == "Cookie":
			// Keying on a credential makes one entry per user: a store of private responses.
			if !c.Authorized {
				v.errorf(hp, "varying on %s caches per-user responses; set cache.authorized: true to mean it", h)
			}
		}
		seen[h] = true
	}
	if !slices.Contains(cacheStores, c.Store) {
		v.errorf(p+".store", "must be memory or redis, got %q%s", c.Store, suggest(c.Store, cacheStores))
	} else if c.Store == "redis" && !v.c.Redis.Enabled() {
		v.errorf(p+".store", "store redis needs the top-level redis section (redis.addrs)")
	}
}
