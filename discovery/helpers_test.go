package discovery

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for Tracker tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// scriptedSource sends whatever the test puts on feed, then waits for ctx like a real source.
type scriptedSource struct{ feed chan Snapshot }

func (s scriptedSource) Watch(ctx context.Context, out chan<- Snapshot) error {
	for {
		select {
		case snap := <-s.feed:
			if err := send(ctx, out, snap); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// next waits up to timeout for a snapshot that satisfies ok, skipping others.
func next(t *testing.T, ch <-chan Snapshot, timeout time.Duration, what string, ok func(Snapshot) bool) Snapshot {
	t.Helper()
	deadline := time.After(timeout)
	var last *Snapshot
	for {
		select {
		case s := <-ch:
			if ok(s) {
				return s
			}
			last = &s
		case <-deadline:
			if last != nil {
				t.Fatalf("no snapshot with %s within %s; last: ids=%v err=%v index=%d", what, timeout, ids(last.Endpoints), last.Err, last.Index)
			}
			t.Fatalf("no snapshot with %s within %s; none received", what, timeout)
		}
	}
}

func ids(eps []Endpoint) []string {
	out := make([]string, 0, len(eps))
	for _, e := range eps {
		out = append(out, e.ID)
	}
	return out
}

// hasIDs matches an authoritative snapshot with exactly these endpoint IDs.
func hasIDs(want ...string) func(Snapshot) bool {
	slices.Sort(want)
	return func(s Snapshot) bool { return s.Err == nil && slices.Equal(ids(s.Endpoints), want) }
}

func endpoints(idList ...string) []Endpoint {
	out := make([]Endpoint, len(idList))
	for i, id := range idList {
		out[i] = Endpoint{ID: id, Address: "10.0.0." + string(rune('1'+i)), Port: 8080, Weight: 1}
	}
	return out
}
