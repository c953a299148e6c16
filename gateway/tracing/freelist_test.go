package tracing

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestFreeListIsLastInFirstOut: a request takes the record released last (still in the CPU's
// caches), not the one released longest ago.
func TestFreeListIsLastInFirstOut(t *testing.T) {
	r := newRecords(8, 2)
	var held []*Span
	for range 3 {
		held = append(held, r.take())
	}
	for _, s := range held {
		r.put(s)
	}
	for i := len(held) - 1; i >= 0; i-- {
		if s := r.take(); s != held[i] {
			t.Fatalf("took the record of slot %d, want the last released, slot %d", s.slot, held[i].slot)
		}
	}
	if n := r.made.Load(); n != 3 {
		t.Fatalf("%d records made, want 3: released ones are taken again", n)
	}
}

// TestFreeListHandsEachRecordToOne: goroutines taking and releasing at once never hold the same
// record together, never make more than the limit, and leave every record on the list. Run
// with -race, it also holds the list's memory ordering (a record's slot is published before it
// is read).
func TestFreeListHandsEachRecordToOne(t *testing.T) {
	const limit, workers, rounds = 16, 8, 20000
	r := newRecords(limit-4, 4)
	var held [limit + 1]atomic.Bool
	var wg sync.WaitGroup
	var failed atomic.Value
	for range workers {
		wg.Go(func() {
			var mine []*Span
			for i := range rounds {
				if s := r.take(); s != nil {
					if held[s.slot].Swap(true) {
						failed.Store("a record was handed to two goroutines at once")
						return
					}
					s.AddInt("k", int64(i)) // the holder writes it
					mine = append(mine, s)
				}
				if len(mine) > 0 && (i%3 == 0 || len(mine) > 2) {
					s := mine[0]
					mine = mine[1:]
					held[s.slot].Store(false)
					s.reset()
					r.put(s)
				}
			}
			for _, s := range mine {
				held[s.slot].Store(false)
				r.put(s)
			}
		})
	}
	wg.Wait()
	if msg := failed.Load(); msg != nil {
		t.Fatal(msg)
	}
	if n := r.made.Load(); n > limit {
		t.Fatalf("%d records made, want at most %d", n, limit)
	}
	seen := map[*Span]bool{}
	for s := r.take(); s != nil && !seen[s]; s = r.take() {
		seen[s] = true
		if int64(len(seen)) == r.made.Load() {
			break
		}
	}
	if int64(len(seen)) != r.made.Load() {
		t.Fatalf("%d distinct records on the list after every release, want all %d made", len(seen), r.made.Load())
	}
}
