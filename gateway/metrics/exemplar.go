package metrics

import (
	"sync/atomic"
	"time"
)

// exemplarEvery is how often one bucket of the duration histogram takes a new exemplar. A
// scrape shows one exemplar per bucket, the latest, so replacing it on every traced request
// (about ten allocations in client_golang each time) buys nothing when every request is
// sampled; a bucket that is rarely hit, the slow one an operator jumps from, still takes its
// request's exemplar at once.
const exemplarEvery = int64(100 * time.Millisecond)

// exemplarClock remembers when each duration bucket last took an exemplar. Safe for
// concurrent use; it takes no lock.
type exemplarClock struct {
	last [len(durationBuckets) + 1]atomic.Int64 // the last bucket is +Inf
}

// durationBuckets is DurationBuckets as an array, so the clock's size is known.
var durationBuckets = [...]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// due reports whether the bucket of a sample of seconds may take an exemplar at now (Unix
// nanoseconds), and if so claims it: of two requests racing for one bucket, one gets it.
func (c *exemplarClock) due(seconds float64, now int64) bool {
	i := 0
	for i < len(durationBuckets) && seconds > durationBuckets[i] { // le: a bucket holds its bound
		i++
	}
	l := &c.last[i]
	prev := l.Load()
	return now-prev >= exemplarEvery && l.CompareAndSwap(prev, now)
}
