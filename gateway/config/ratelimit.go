package config

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// RateLimit is a route's token bucket: Rate tokens a second refill it, Burst is its size.
type RateLimit struct {
	Rate  Rate `yaml:"rate"`
	Burst int  `yaml:"burst"`
	// Key picks the bucket: client_ip, route, header:<Name> or jwt:<claim>.
	Key string `yaml:"key"`
	// Scope is local (this process) or redis (shared by every replica).
	Scope LimitScope `yaml:"scope"`
	// OnStoreError is what scope: redis does when Redis fails: allow (use the local bucket)
	// or deny (503).
	OnStoreError StoreErrorAction `yaml:"on_store_error"`
	// MaxKeys caps the buckets kept in memory for this route.
	MaxKeys int `yaml:"max_keys"`
}

// LimitScope is where a rate limit's buckets live: rate_limit.scope.
type LimitScope string

// Rate limit scopes.
const (
	ScopeLocal LimitScope = "local"
	ScopeRedis LimitScope = "redis"
)

// StoreErrorAction is what a policy backed by Redis does when Redis fails:
// rate_limit.on_store_error.
type StoreErrorAction string

// Actions on a Redis failure.
const (
	OnStoreErrorAllow StoreErrorAction = "allow" // fall back to the local bucket
	OnStoreErrorDeny  StoreErrorAction = "deny"  // refuse with 503
)

var (
	limitScopes  = []LimitScope{ScopeLocal, ScopeRedis}
	storeErrors  = []StoreErrorAction{OnStoreErrorAllow, OnStoreErrorDeny}
	limitKeyHelp = "client_ip, route, header:<Name> or jwt:<claim>"
)

// Rate limit defaults. docs/configuration.md lists the same values.
const (
	DefaultRateLimitKey          = "client_ip"
	DefaultRateLimitScope        = ScopeLocal
	DefaultRateLimitOnStoreError = OnStoreErrorAllow
	DefaultRateLimitMaxKeys      = 100_000
)

func (c *Config) rateLimitDefaults(p string, r *Route) {
	rl := r.RateLimit
	if rl.Burst == 0 && !c.written(p+".rate_limit.burst") {
		rl.Burst = int(max(rl.Rate.N, 1))
	}
	setDefault(&rl.Key, DefaultRateLimitKey)
	setDefault(&rl.Scope, DefaultRateLimitScope)
	setDefault(&rl.OnStoreError, DefaultRateLimitOnStoreError)
	setDefault(&rl.MaxKeys, DefaultRateLimitMaxKeys)
}

func (v *validator) rateLimit(p string, r *Route) {
	rl := r.RateLimit
	p += ".rate_limit"
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
		v.errorf(p+".scope", "must be local or redis, got %q%s", rl.Scope, suggest(string(rl.Scope), names(limitScopes)))
	} else if rl.Scope == ScopeRedis && !v.c.Redis.Enabled() {
		v.errorf(p+".scope", "scope redis needs the top-level redis section (redis.addrs)")
	}
	if !slices.Contains(storeErrors, rl.OnStoreError) {
		v.errorf(p+".on_store_error", "must be allow or deny, got %q%s", rl.OnStoreError, suggest(string(rl.OnStoreError), names(storeErrors)))
	}
	if rl.MaxKeys < 1 || rl.MaxKeys > 10_000_000 {
		v.errorf(p+".max_keys", "must be between 1 and 10000000, got %d", rl.MaxKeys)
	}
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
