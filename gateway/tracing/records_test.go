package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/archway-gateway/archway/internal/exportqueue"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// stallingCollector is an OTLP/HTTP endpoint on a loopback port that, while stalled, holds
// every request it gets without answering; once recovered it takes them and keeps the names of
// the spans they carry.
type stallingCollector struct {
	srv     *httptest.Server
	mu      sync.Mutex
	gate    chan struct{} // non-nil while stalled: requests wait for it to close
	arrived chan struct{} // a request is held in this stall (capacity 1)
	names   map[string]int
}

func startStallingCollector(t *testing.T) *stallingCollector {
	t.Helper()
	c := &stallingCollector{names: map[string]int{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		c.mu.Lock()
		gate, arrived := c.gate, c.arrived
		c.mu.Unlock()
		if gate != nil {
			select {
			case arrived <- struct{}{}:
			default:
			}
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					c.names[s.Name]++
				}
			}
		}
		c.mu.Unlock()
	}))
	t.Cleanup(func() {
		c.recover()
		c.srv.Close()
	})
	return c
}

// stall makes the collector hold requests; the channel it returns gets a value when one is held.
func (c *stallingCollector) stall() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gate, c.arrived = make(chan struct{}), make(chan struct{}, 1)
	return c.arrived
}

// recover answers the held requests and every later one.
func (c *stallingCollector) recover() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gate != nil {
		close(c.gate)
		c.gate = nil
	}
}

func (c *stallingCollector) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.names[name]
}

// recordSpan records one server span shaped like the gateway's (ten attributes, ~150 bytes of
// text) named name, if a record is free.
func recordSpan(tr *Tracer, name string, i int) {
	s := tr.StartSpan(KindServer, time.Now())
	if s == nil {
		return
	}
	s.TraceID, s.SpanID = trace.TraceID{1, byte(i)}, trace.SpanID{2, byte(i >> 8), byte(i)}
	s.SetName(name, "")
	s.AddString("http.request.method", "GET")
	s.AddString("url.path", "/api/products/1234")
	s.AddString("url.scheme", "http")
	s.AddString("server.address", "shop.example.com")
	s.AddString("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/133.0")
	s.AddString("archway.request_id", "0193a6f2-7c1e-7e55-9a43-5c1d2e3f4a5b")
	s.AddInt("http.response.status_code", 200)
	s.AddString("archway.route", "products")
	s.AddString("archway.target", "10.0.3.17:8080")
	s.AddInt("archway.attempts", 1)
	s.End()
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestStalledCollectorBoundsRecords: while the collector holds the exporter's request and
// never answers, spans keep coming. The tracer makes at most queue_size + batch_size records,
// each once: every span that finds no room is counted as dropped, the heap stays within that
// many records, and when the collector stalls again later, filling the queue again allocates
// nothing. Once the collector answers, every new span is exported.
//
// Records from a sync.Pool (the code before) fail it: the pool is emptied by two GCs, so
// refilling the queue allocated a new record (and its text buffer) for every span queued.
func TestStalledCollectorBoundsRecords(t *testing.T) {
	const queue, batch = 256, 64
	const limit = queue + batch
	c := startStallingCollector(t)
	before := heapInUse()
	tr, stats := testTracer(t, c.srv.URL, queue, batch, time.Hour) // a held request never times out
	defer func() {
		c.recover() // first: Shutdown waits for the export the collector holds
		_ = tr.Shutdown(context.Background())
	}()
	ended := 0
	record := func(name string) {
		recordSpan(tr, name, ended)
		ended++
	}
	checkMade := func() {
		t.Helper()
		if made := tr.records.made.Load(); made > limit {
			t.Fatalf("%d records made, want at most %d", made, limit)
		}
	}

	// The collector stalls: the sender takes the first batch into the stall, the queue fills,
	// and what finds no room is dropped.
	arrived := c.stall()
	for range 2 * limit {
		record("stalled")
	}
	<-arrived
	for range 2 * limit {
		record("stalled")
	}
	checkMade()
	if full := stats.DroppedFor(exportqueue.DropQueueFull); full < uint64(ended-limit) || stats.Exported() != 0 {
		t.Fatalf("%d spans ended into a stalled collector: %d dropped as queue_full, %d exported; want at least %d dropped, none exported",
			ended, full, stats.Exported(), ended-limit)
	}

	// It answers: what was queued is exported, and every span is accounted for.
	c.recover()
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := stats.Exported() + stats.Dropped(); got != uint64(ended) || stats.Exported() == 0 {
		t.Fatalf("%d exported and %d dropped, want every one of the %d ended, some exported", stats.Exported(), stats.Dropped(), ended)
	}

	// It stalls again, after two GCs (which empty a sync.Pool): the queue fills with the same
	// records.
	runtime.GC()
	runtime.GC()
	arrived = c.stall()
	for range batch { // the sender wakes for a batch and sends it into the stall
		record("stalled")
	}
	<-arrived
	if raceEnabled {
		for range 2*limit + 1 {
			record("stalled")
		}
	} else if a := testing.AllocsPerRun(2*limit, func() { record("stalled") }); a != 0 {
		t.Fatalf("a span recorded while the queue fills again allocates %.2f times, want 0", a)
	}
	checkMade()
	// Long after the queue is full: the heap holds at most every record the tracer may make
	// (with the text buffer each starts with), the queue's channel and the free list, and room
	// for the exporter's buffer and the HTTP client's state.
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	allocated := ms.TotalAlloc
	const more = 20000
	for range more {
		record("stalled")
	}
	runtime.ReadMemStats(&ms)
	perRecord := 2*uint64(unsafe.Sizeof(Span{})) + 512 + 256 // a record and its child
	if n := ms.TotalAlloc - allocated; !raceEnabled && n > perRecord {
		t.Errorf("%d spans recorded during the stall allocated %d bytes, want none", more, n)
	}
	bound := limit*(perRecord+16) + 1<<20
	// A heap that shrank meanwhile (a collection freed more than the stall made) grew by 0.
	if now := heapInUse(); now > before && now-before > bound {
		grown := now - before
		t.Errorf("the heap grew by %d bytes during the stall, want at most %d (%d records of %d bytes and 1 MiB)", grown, bound, limit, perRecord)
	}
	checkMade()
	if got, exported := stats.Dropped(), stats.Exported(); got+exported+limit < uint64(ended) {
		t.Fatalf("%d spans ended: %d exported and %d dropped, so more than %d are unaccounted for", ended, exported, got, limit)
	}

	// It answers again: what was queued goes out, then every new span does.
	c.recover()
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := stats.Exported() + stats.Dropped(); got != uint64(ended) {
		t.Fatalf("%d spans exported or dropped, want every one of the %d ended", got, ended)
	}
	const after = 3 * limit
	for i := range after {
		record("recovered")
		if i%batch == batch-1 { // a batch at a time: a queue that is never full drops nothing
			if err := tr.ForceFlush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := c.count("recovered"); n != after {
		t.Fatalf("the collector got %d of the %d spans recorded after it recovered (dropped in all %d: %s)", n, after, stats.Dropped(), stats.LastError())
	}
	checkMade()
}
