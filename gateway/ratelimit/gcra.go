// Package ratelimit is the per-route rate limit policy: a token bucket per key, kept in this
// process (scope: local) or in Redis for every replica (scope: redis).
//
// Both scopes implement the token bucket as GCRA (the generic cell rate algorithm): a bucket is
// one number, the theoretical arrival time (TAT) of the next request at the sustained rate. A
// request at time now is admitted when max(TAT, now) + interval − now ≤ burst × interval, and
// then moves TAT there. That is exactly a bucket of burst tokens refilled at rate, with a single
// integer of state, so a check is one compare-and-update in memory or one short Lua script in
// Redis. A key whose TAT is in the past holds a full bucket and carries no information: dropping
// it is free, which is how idle keys are evicted.
package ratelimit

import "time"

// Decision is the outcome of one check.
type Decision struct {
	Allowed bool
	// Limit is the bucket size (burst).
	Limit int
	// Remaining is how many requests could be admitted now, after this one.
	Remaining int
	// Reset is how long until the bucket is full again.
	Reset time.Duration
	// RetryAfter is how long until a request would be admitted, when this one was not.
	RetryAfter time.Duration
}

// params are one bucket shape in nanoseconds.
type params struct {
	interval int64 // one request's cost
	tau      int64 // burst × interval: the bucket's capacity in time
	burst    int
}

func newParams(interval time.Duration, burst int) params {
	iv := max(int64(interval), 1)
	return params{interval: iv, tau: iv * int64(burst), burst: burst}
}

// gcra decides a request at now against tat and returns the new tat to store (unchanged when
// the request is refused).
func (p params) gcra(tat, now int64) (int64, Decision) {
	if tat < now {
		tat = now
	}
	next := tat + p.interval
	diff := next - now
	if diff > p.tau {
		return tat, Decision{
			Limit: p.burst, Remaining: 0,
			Reset: time.Duration(tat - now), RetryAfter: time.Duration(diff - p.tau),
		}
	}
	return next, Decision{
		Allowed: true, Limit: p.burst,
		Remaining: int((p.tau - diff) / p.interval), Reset: time.Duration(diff),
	}
}
