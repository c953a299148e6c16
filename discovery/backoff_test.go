package discovery

import (
	"testing"
	"time"
)

func TestBackoffGrowsCapsAndJitters(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for _, tc := range []struct {
		attempt int
		ceil    time.Duration
	}{
		{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {3, 400 * time.Millisecond},
		{4, 800 * time.Millisecond}, {5, time.Second}, {50, time.Second},
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := b.Delay(tc.attempt)
			if d < tc.ceil/2 || d > tc.ceil {
				t.Fatalf("Delay(%d) = %s; want within [%s, %s]", tc.attempt, d, tc.ceil/2, tc.ceil)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("Delay(%d) took only %d distinct values in 200 draws; want jitter", tc.attempt, len(seen))
		}
	}
	if d := (Backoff{}).Delay(1); d < DefaultBackoffMin/2 || d > DefaultBackoffMin {
		t.Fatalf("zero Backoff Delay(1) = %s; want the default", d)
	}
}

func TestNextIndexResets(t *testing.T) {
	for _, tc := range []struct {
		name            string
		prev, got, want uint64
	}{
		{"first read", 0, 42, 42},
		{"moved forward", 42, 57, 57},
		{"wait expired, same index", 42, 42, 42},
		{"went backwards: Consul lost its state", 42, 7, 0},
		{"zero must not be blocked on", 0, 0, 1},
		{"zero after an index: backwards", 42, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextIndex(tc.prev, tc.got); got != tc.want {
				t.Fatalf("nextIndex(%d, %d) = %d; want %d", tc.prev, tc.got, got, tc.want)
			}
		})
	}
}
