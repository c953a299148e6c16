package config

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Redis is the connection the gateway's shared state (scope: redis rate limits, store: redis
// caches) uses. One client serves every route; it is rebuilt when this section changes.
type Redis struct {
	// Addrs are host:port pairs: one for a single node, several seeds for a cluster.
	Addrs    []string  `yaml:"addrs,omitempty"`
	Mode     RedisMode `yaml:"mode,omitempty"`
	Username string    `yaml:"username,omitempty"`
	Password Secret    `yaml:"password,omitempty"`
	DB       int       `yaml:"db,omitempty"`
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

// RedisMode is how the gateway talks to Redis: redis.mode.
type RedisMode string

// Redis modes.
const (
	RedisSingle  RedisMode = "single"
	RedisCluster RedisMode = "cluster"
)

var redisModes = []RedisMode{RedisSingle, RedisCluster}

// Redis defaults. docs/configuration.md lists the same values.
const (
	DefaultRedisMode            = RedisSingle
	DefaultRedisTimeout         = Duration(50 * time.Millisecond)
	DefaultRedisKeyPrefix       = "archway:"
	DefaultRedisBreakerFailures = 3
	DefaultRedisBreakerProbe    = Duration(500 * time.Millisecond)
)

func (c *Config) redisDefaults() {
	rd := &c.Redis
	if !rd.Enabled() {
		return
	}
	setDefault(&rd.Mode, DefaultRedisMode)
	if !c.written("redis.timeout") {
		rd.Timeout = DefaultRedisTimeout
	}
	setDefault(&rd.KeyPrefix, DefaultRedisKeyPrefix)
	setDefault(&rd.BreakerFailures, DefaultRedisBreakerFailures)
	setDefault(&rd.BreakerProbe, DefaultRedisBreakerProbe)
}

func (v *validator) redis() {
	r := &v.c.Redis
	if !r.Enabled() {
		if v.c.written("redis") {
			v.errorf("redis.addrs", "at least one host:port is required")
		}
		return
	}
	for i, a := range r.Addrs {
		v.targetAddr(fmt.Sprintf("redis.addrs[%d]", i), a)
	}
	if !slices.Contains(redisModes, r.Mode) {
		v.errorf("redis.mode", "must be single or cluster, got %q%s", r.Mode, suggest(string(r.Mode), names(redisModes)))
	} else if r.Mode == RedisSingle && len(r.Addrs) > 1 {
		v.errorf("redis.addrs", "mode single takes one address; set mode: cluster for several")
	}
	if r.Mode == RedisCluster && r.DB != 0 {
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
