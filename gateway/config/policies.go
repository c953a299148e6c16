package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Redis is the connection the gateway's shared state (scope: redis rate limits, store: redis
// caches) uses. One client serves every route; it is rebuilt when this section changes.
type Redis struct {
	// Addrs are host:port pairs: one for a single node, several seeds for a cluster.
	Addrs    []string `yaml:"addrs,omitempty"`
	Mode     string   `yaml:"mode,omitempty"` // single or cluster
	Username string   `yaml:"username,omitempty"`
	Password Secret   `yaml:"password,omitempty"`
	DB       int      `yaml:"db,omitempty"`
	// Timeout bounds every Redis call a request waits for: dial, pool wait, read and write.
	Timeout  Duration `yaml:"timeout,omitempty"`
	PoolSize int      `yaml:"pool_size,omitempty"`
	// KeyPrefix starts every key the gateway writes.
	KeyPrefix string `yaml:"key_prefix,omitempty"`
	// BreakerFailures consecutive failed calls open the breaker: requests stop trying Redis and
	// take their fallback at once, while one background probe per BreakerProbe checks Redis.
	BreakerFailures int      `yaml:"breaker_failures,omitempty"`
	BreakerProbe    Duration `yaml:"breaker_probe,omitempty"`
}

// Enabled reports whether a Redis connection is configured.
func (r Redis) Enabled() bool { return len(r.Addrs) > 0 }

// RateLimit is a route's token bucket: Rate tokens a second refill it, Burst is its size.
type RateLimit struct {
	Rate  Rate `yaml:"rate"`
	Burst int  `yaml:"burst"`
	// Key picks the bucket: client_ip, route, header:<Name> or jwt:<claim>.
	Key string `yaml:"key"`
	// Scope is local (this process) or redis (shared by every replica).
	Scope string `yaml:"scope"`
	// OnStoreError is what scope: redis does when Redis fails: allow (use the local bucket)
	// or deny (503).
	OnStoreError string `yaml:"on_store_error"`
	// MaxKeys caps the buckets kept in memory for this route.
	MaxKeys int `yaml:"max_keys"`
}

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
	StaleWhileRevalidate Duration `yaml:"stale_while_revalidate"`
	Store                string   `yaml:"store"` // memory or redis
	// Authorized stores and serves responses to requests carrying Authorization or Cookie.
	Authorized bool `yaml:"authorized,omitempty"`
	// SetCookie stores responses carrying Set-Cookie, and replays it.
	SetCookie bool `yaml:"set_cookie,omitempty"`
	// StaleIfError serves a stored response this long past its freshness when the upstream fails.
	StaleIfError Duration `yaml:"stale_if_error,omitempty"`
}

// Rate is a number of events per time unit, written "10/s", "600/m" or "1000/h" ("10r/s", as
// nginx writes it, is accepted too).
type Rate struct {
	N   int64
	Per time.Duration
}

// Interval is the time one event costs: Per/N.
func (r Rate) Interval() time.Duration {
	if r.N <= 0 {
		return 0
	}
	return r.Per / time.Duration(r.N)
}

// PerSecond is the rate in events per second.
func (r Rate) PerSecond() float64 {
	if r.Per <= 0 {
		return 0
	}
	return float64(r.N) / r.Per.Seconds()
}

// IsZero reports whether no rate was given.
func (r Rate) IsZero() bool { return r.N == 0 }

func (r *Rate) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a rate such as 10/s, found %s", kindName(n))
	}
	v, err := ParseRate(n.Value)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ParseRate parses "N/s", "N/m", "N/h" (or "Nr/s").
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	num, unit, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("invalid rate %q (examples: 10/s, 600/m, 1000/h)", s)
	}
	num = strings.TrimSuffix(strings.TrimSpace(num), "r")
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt32 {
		return Rate{}, fmt.Errorf("invalid rate %q: the count must be a whole number from 1 (examples: 10/s, 600/m)", s)
	}
	var per time.Duration
	switch strings.TrimSpace(unit) {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return Rate{}, fmt.Errorf("invalid rate %q: the unit must be s, m or h", s)
	}
	if per/time.Duration(n) < time.Microsecond {
		return Rate{}, fmt.Errorf("rate %q is too high (at most 1000000/s)", s)
	}
	return Rate{N: n, Per: per}, nil
}

func (r Rate) String() string {
	unit := "s"
	switch r.Per {
	case time.Minute:
		unit = "m"
	case time.Hour:
		unit = "h"
	}
	return fmt.Sprintf("%d/%s", r.N, unit)
}

// MarshalYAML renders the rate as written.
func (r Rate) MarshalYAML() (any, error) { return r.String(), nil }
