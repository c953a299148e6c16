package ratelimit

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// held counts the buckets in l's tables and checks the tables' invariants: every bucket is live,
// appears once, is found by its own probe, and each shard's count is right.
func held(t *testing.T, l *Local) int {
	t.Helper()
	total := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		tb := s.table.Load()
		n := 0
		seen := map[uint64]bool{}
		for j := range tb.slots {
			b := tb.slots[j].Load()
			if b == nil {
				continue
			}
			n++
			if b.tat.Load() == deadTAT {
				t.Errorf("shard %d slot %d holds a dropped bucket", i, j)
			}
			if seen[b.key] {
				t.Errorf("shard %d holds key %x twice", i, b.key)
			}
			seen[b.key] = true
			if b.key%numShards != uint64(i) {
				t.Errorf("key %x in shard %d", b.key, i)
			}
			if got := tb.find(b.key); got != b {
				t.Errorf("shard %d: the probe for key %x does not reach its bucket (slot %d)", i, b.key, j)
			}
		}
		if n != s.live {
			t.Errorf("shard %d holds %d buckets, counts %d", i, n, s.live)
		}
		s.mu.Unlock()
		total += n
	}
	return total
}

// TestTableDeleteKeepsProbesWhole drives one small table through random inserts and deletions
// of keys whose probes collide and wrap around its end, against a map, and checks after every
// step that each key held is found and each key removed is not.
func TestTableDeleteKeepsProbesWhole(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tb := newTable(16)
	model := map[uint64]*bucket{}
	// Homes 13..15 and 0..1: long runs that wrap. Distinct keys share a home through the bits
	// above the home and shard bits.
	key := func() uint64 {
		home := uint64([]int{13, 14, 15, 15, 0, 1}[rng.IntN(6)])
		return (rng.Uint64()<<10 | home<<shardBits) &^ (numShards - 1)
	}
	for step := range 20_000 {
		if len(model) < 8 && (len(model) == 0 || rng.IntN(2) == 0) {
			k := key()
			if model[k] != nil {
				continue
			}
			b := &bucket{key: k}
			tb.insert(b)
			model[k] = b
		} else {
			for k, b := range model {
				tb.remove(b)
				delete(model, k)
				if tb.find(k) != nil {
					t.Fatalf("step %d: removed key %x still found", step, k)
				}
				break
			}
		}
		n := 0
		for j := range tb.slots {
			if tb.slots[j].Load() != nil {
				n++
			}
		}
		if n != len(model) {
			t.Fatalf("step %d: %d slots used, %d keys held", step, n, len(model))
		}
		for k, b := range model {
			if tb.find(k) != b {
				t.Fatalf("step %d: key %x (home %d) not found", step, k, tb.home(k))
			}
		}
	}
}

// TestLocalConcurrentAdmitsExactlyRateTimesTimePlusBurst: many goroutines check the same keys
// at once, with times from one shared clock that runs four times faster than the keys' rate.
// Each key must admit exactly burst + elapsed/interval requests: a check that lost another's
// update would admit more, one that double-counted would admit fewer. The buckets start full
// and stay ahead of the clock, so none ever goes idle and the count has exactly one answer.
func TestLocalConcurrentAdmitsExactlyRateTimesTimePlusBurst(t *testing.T) {
	const (
		interval   = 256 // ns
		burst      = 50
		goroutines = 16
		perG       = 4000
		t0         = int64(1_700_000_000_000_000_000)
	)
	for _, keys := range []int{1, 64} {
		t.Run(fmt.Sprintf("keys=%d", keys), func(t *testing.T) {
			l := NewLocal(interval*time.Nanosecond, burst, 10*keys)
			names := make([][]byte, keys)
			admitted := make([]atomic.Int64, keys)
			for k := range names {
				names[k] = []byte("ip:10.0.0." + strconv.Itoa(k))
				// Use the whole burst at t0, so the bucket's TAT is a full tau ahead.
				for l.AllowAt(names[k], t0).Allowed {
					admitted[k].Add(1)
				}
				if admitted[k].Load() != burst {
					t.Fatalf("key %d: %d admitted at t0, want the burst of %d", k, admitted[k].Load(), burst)
				}
			}
			var clock atomic.Int64
			clock.Store(t0)
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					for i := range perG {
						k := (g + i) % keys
						if l.AllowAt(names[k], clock.Add(1)).Allowed {
							admitted[k].Add(1)
						}
					}
				})
			}
			wg.Wait()
			end := clock.Load()
			want := burst + (end-t0)/interval
			for k := range names {
				// Whatever the bucket still holds at the end is admitted now, so the count
				// covers exactly [t0, end].
				for l.AllowAt(names[k], end).Allowed {
					admitted[k].Add(1)
				}
				if got := admitted[k].Load(); got != want {
					t.Errorf("key %d: %d admitted over %d ns, want exactly %d (burst %d + %d intervals)",
						k, got, end-t0, want, burst, (end-t0)/interval)
				}
			}
			if l.Evictions() != 0 {
				t.Fatalf("%d evictions under the cap", l.Evictions())
			}
		})
	}
}

// TestLocalCheckOfKnownKeyTakesNoLock: with every shard's lock held by this goroutine, a key
// that exists is still checked. A check that took a lock would block here for good (the test
// then ends at go test's timeout with this stack).
func TestLocalCheckOfKnownKeyTakesNoLock(t *testing.T) {
	l := NewLocal(time.Second, 10, 100)
	now := time.Now().UnixNano()
	key := []byte("ip:192.0.2.7")
	l.AllowAt(key, now)
	for i := range l.shards {
		l.shards[i].mu.Lock()
	}
	d := l.AllowAt(key, now)
	for i := range l.shards {
		l.shards[i].mu.Unlock()
	}
	if !d.Allowed || d.Remaining != 8 {
		t.Fatalf("second check: %+v, want admitted with 8 left", d)
	}
}

// TestLocalConcurrentChurn: goroutines check far more keys than the cap while the clock moves
// (so some buckets go idle), one of them sweeps and another reconfigures the cap. Run with
// -race; afterwards the tables must be whole and the counters must match them.
func TestLocalConcurrentChurn(t *testing.T) {
	const goroutines, perG = 8, 20_000
	l := NewLocal(time.Millisecond, 3, 256)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			key := make([]byte, 0, 16)
			for i := range perG {
				now := clock.Add(int64(time.Microsecond))
				l.AllowAt(strconv.AppendInt(key[:0], int64(rng.IntN(5000)), 10), now)
				switch {
				case g == 0 && i%1000 == 0:
					l.Sweep(now)
				case g == 1 && i%3000 == 0:
					l.Configure(time.Millisecond, 3, 256<<(i/3000%2))
				}
			}
		})
	}
	wg.Wait()
	l.Configure(time.Millisecond, 3, 512)
	total := held(t, l)
	if total != int(l.Keys()) {
		t.Fatalf("%d buckets held, Keys() says %d", total, l.Keys())
	}
	if total > 512 {
		t.Fatalf("%d buckets held, cap 512", total)
	}
	if l.Evictions() == 0 {
		t.Fatal("no evictions: the test did not fill the shards")
	}
	if n := l.Sweep(clock.Load() + int64(time.Hour)); n != total || l.Keys() != 0 || held(t, l) != 0 {
		t.Fatalf("final sweep dropped %d of %d, %d left", n, total, l.Keys())
	}
}
