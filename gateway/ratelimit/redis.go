package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/archway-gateway/archway/gateway/redisstore"
	"github.com/redis/go-redis/v9"
)

// gcraScript is GCRA in one atomic step on the Redis server, with the server's clock, so every
// replica shares one bucket and one notion of now. The key expires when its bucket is full
// again. Times are microseconds (exact in Lua's doubles for centuries).
//
// KEYS[1]: the bucket. ARGV[1]: interval µs. ARGV[2]: burst × interval µs.
// Returns {allowed (1|0), retry_after µs, reset µs}.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local nxt = tat + interval
local diff = nxt - now
if diff > tau then
  return {0, diff - tau, tat - now}
end
redis.call('SET', KEYS[1], nxt, 'PX', math.ceil(diff / 1000) + 1)
return {1, 0, diff}
`)

// Redis is a set of token buckets shared through Redis by every gateway replica. Each check is
// one EVALSHA of gcraScript (EVAL when the server does not know it yet). Safe for concurrent use.
type Redis struct {
	store  *redisstore.Store
	prefix string // <key_prefix>rl:<route>:
	p      params
}

// NewRedis returns buckets for route in store.
func NewRedis(store *redisstore.Store, route string, interval time.Duration, burst int) *Redis {
	return &Redis{store: store, prefix: store.KeyPrefix + "rl:" + route + ":", p: newParams(interval, burst)}
}

// Key is the Redis key of a bucket: the whole name is the hash tag, so a cluster spreads
// buckets over its slots while each script touches exactly one.
func (r *Redis) Key(key []byte) string {
	return "{" + r.prefix + string(key) + "}"
}

// Allow checks one request for key, waiting at most the store's timeout.
func (r *Redis) Allow(key []byte) (Decision, error) {
	ctx, cancel := r.store.Context()
	defer cancel()
	return r.AllowContext(ctx, key)
}

// AllowContext is Allow under the caller's context.
func (r *Redis) AllowContext(ctx context.Context, key []byte) (Decision, error) {
	us := func(ns int64) int64 { return max(ns/1000, 1) }
	res, err := gcraScript.Run(ctx, r.store.Client, []string{r.Key(key)}, us(r.p.interval), us(r.p.tau)).Int64Slice()
	r.store.Report(err)
	if err != nil {
		return Decision{}, fmt.Errorf("rate limit script: %w", err)
	}
	if len(res) != 3 {
		return Decision{}, fmt.Errorf("rate limit script: unexpected reply %v", res)
	}
	d := Decision{Allowed: res[0] == 1, Limit: r.p.burst}
	if d.Allowed {
		d.Reset = time.Duration(res[2]) * time.Microsecond
		d.Remaining = int((r.p.tau - int64(d.Reset)) / r.p.interval)
	} else {
		d.RetryAfter = time.Duration(res[1]) * time.Microsecond
		d.Reset = time.Duration(res[2]) * time.Microsecond
	}
	return d, nil
}
