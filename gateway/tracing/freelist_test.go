package tracing

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
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

// TestEndAfterTakesTheCallersDuration: a span ended with the duration its caller measured (the
// request's, the upstream attempt's) runs exactly that long from its start, for a record of
// its own and for a client span in its server span's record.
func TestEndAfterTakesTheCallersDuration(t *testing.T) {
	c := startCollector(t)
	tr, stats := testTracer(t, strings.TrimSuffix(c.url, "/v1/traces"), 16, 16, 5*time.Second)
	defer tr.Shutdown(context.Background())
	start := time.Unix(1_800_000_000, 5)
	s := tr.StartSpan(KindServer, start)
	s.TraceID, s.SpanID = trace.TraceID{1}, trace.SpanID{2}
	child := s.StartChild(KindClient, start.Add(time.Millisecond))
	child.TraceID, child.SpanID, child.Parent = s.TraceID, trace.SpanID{3}, s.SpanID
	child.EndAfter(1234 * time.Microsecond)
	s.EndAfter(3 * time.Millisecond)
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if stats.Exported() != 2 {
		t.Fatalf("exported %d spans, want 2", stats.Exported())
	}
	spans := c.request(t, 0).ResourceSpans[0].ScopeSpans[0].Spans
	want := map[byte][2]time.Time{
		2: {start, start.Add(3 * time.Millisecond)},
		3: {start.Add(time.Millisecond), start.Add(time.Millisecond + 1234*time.Microsecond)},
	}
	for _, sp := range spans {
		w := want[sp.SpanId[0]]
		if sp.StartTimeUnixNano != uint64(w[0].UnixNano()) || sp.EndTimeUnixNano != uint64(w[1].UnixNano()) {
			t.Errorf("span %x runs %d to %d, want %d to %d", sp.SpanId, sp.StartTimeUnixNano, sp.EndTimeUnixNano, w[0].UnixNano(), w[1].UnixNano())
		}
	}
}
