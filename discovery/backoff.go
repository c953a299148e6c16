package discovery

import (
	"math/rand/v2"
	"time"
)

// Backoff is the wait between retries after failures: exponential from Min, capped at Max, with
// jitter so that many clients retrying against one recovering Consul spread out. The zero value
// uses the defaults. A Backoff is a plain value, safe to copy and to use concurrently.
type Backoff struct {
	Min time.Duration // the first delay; default 250ms
	Max time.Duration // the cap; default 10s
}

// Default retry delays.
const (
	DefaultBackoffMin = 250 * time.Millisecond
	DefaultBackoffMax = 10 * time.Second
)

func (b Backoff) withDefaults() Backoff {
	if b.Min <= 0 {
		b.Min = DefaultBackoffMin
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	b.Max = max(b.Max, b.Min)
	return b
}

// Delay returns the wait before retry number attempt (1 for the first retry after a failure):
// Min·2^(attempt-1), capped at Max, then drawn uniformly from [d/2, d].
func (b Backoff) Delay(attempt int) time.Duration {
	b = b.withDefaults()
	d := b.Min
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	half := d / 2
	return half + rand.N(d-half+1)
}
