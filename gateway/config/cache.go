package config

import (
	"fmt"
	"net/textproto"
	"slices"
	"time"
)

// Cache is a route's response cache.
type Cache struct {
	// TTL is the freshness of a response whose Cache-Control gives none.
	TTL           Duration `yaml:"ttl"`
	MaxEntryBytes Size     `yaml:"max_entry_bytes"`
	// MaxBytes is the route's memory budget: bodies, headers and keys of its entries.
	MaxBytes Size     `yaml:"max_bytes"`
	Vary     []string `yaml:"vary,omitempty"`
	// StaleWhileRevalidate serves an expired entry this long after it expired while one
	// background request refreshes it.
	StaleWhileRevalidate Duration   `yaml:"stale_while_revalidate"`
	Store                CacheStore `yaml:"store"`
	// Authorized stores and serves responses to requests carrying Authorization or Cookie.
	Authorized bool `yaml:"authorized,omitempty"`
	// SetCookie stores responses carrying Set-Cookie (stored without it).
	SetCookie bool `yaml:"set_cookie,omitempty"`
}

// CacheStore is where a route's cache keeps entries: cache.store.
type CacheStore string

// Cache stores.
const (
	CacheMemory CacheStore = "memory" // this process only
	CacheRedis  CacheStore = "redis"  // memory, backed by Redis shared by every replica
)

var cacheStores = []CacheStore{CacheMemory, CacheRedis}

// Cache defaults. docs/configuration.md lists the same values.
const (
	DefaultCacheTTL           = Duration(60 * time.Second)
	DefaultCacheMaxEntryBytes = Size(1 << 20)
	DefaultCacheMaxBytes      = Size(64 << 20)
	DefaultCacheStore         = CacheMemory
)

func (c *Config) cacheDefaults(p string, r *Route) {
	ca := r.Cache
	if !c.written(p + ".cache.ttl") {
		ca.TTL = DefaultCacheTTL
	}
	setDefault(&ca.MaxEntryBytes, DefaultCacheMaxEntryBytes)
	setDefault(&ca.MaxBytes, DefaultCacheMaxBytes)
	setDefault(&ca.Store, DefaultCacheStore)
	for j, h := range ca.Vary {
		ca.Vary[j] = textproto.CanonicalMIMEHeaderKey(h)
	}
}

func (v *validator) cache(p string, r *Route) {
	c := r.Cache
	p += ".cache"
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
		v.errorf(p+".store", "must be memory or redis, got %q%s", c.Store, suggest(string(c.Store), names(cacheStores)))
	} else if c.Store == CacheRedis && !v.c.Redis.Enabled() {
		v.errorf(p+".store", "store redis needs the top-level redis section (redis.addrs)")
	}
}
