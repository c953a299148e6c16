//go:build !race

package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestSampledOutRequestAllocatesNothing is the proxied request with tracing configured and the
// route sampled out (sample_ratio 0), the access log on: the trace ids are drawn, the
// traceparent is written upstream with the sampled flag off and both ids reach the access log,
// without an allocation. The collector's address is never dialled: nothing is sampled.
func TestSampledOutRequestAllocatesNothing(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "access.log")
	var seen atomic.Pointer[string]
	recordTraceparent := func(ctx *fasthttp.RequestCtx) {
		if tp := ctx.Request.Header.Peek("traceparent"); seen.Load() == nil {
			s := string(tp)
			seen.Store(&s)
		}
		serveKilobyteJSON(ctx)
	}
	g := newAllocGateway(t, fmt.Sprintf(`
admin: {listen: ""}
access_log: {output: %q}
server:
  tracing: {endpoint: "http://127.0.0.1:9", sample_ratio: 1}
upstreams:
  products: {targets: ["products.internal:80"]}
routes:
  - name: products
    match: {path_prefix: /api/products}
    strip_prefix: /api
    upstream: products
    tracing: {sample_ratio: 0}
`, logPath), recordTraceparent)
	if g.Snapshot().Tracer == nil {
		t.Fatal("tracing is configured but the snapshot has no tracer")
	}
	d := newRequestDriver(benchRequest)
	if allocs := d.steadyAllocs(t, g.entry.Handle, 200, fasthttpBodyPoolCalibration, 2000); allocs != 0 {
		t.Fatalf("a sampled-out request allocates %.2f times in steady state, want 0", allocs)
	}
	tp := seen.Load()
	if tp == nil || !regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-00$`).MatchString(*tp) {
		t.Fatalf("the upstream got traceparent %v, want an unsampled version 00 one", tp)
	}
	if err := g.Snapshot().AccessLog.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	ids := regexp.MustCompile(`,"trace_id":"[0-9a-f]{32}","span_id":"[0-9a-f]{16}"`)
	lines := 0
	for sc.Scan() {
		lines++
		if !ids.Match(sc.Bytes()) {
			t.Fatalf("line %d has no trace ids: %s", lines, sc.Bytes())
		}
	}
	if lines == 0 {
		t.Fatal("no access log lines")
	}
	if n := g.build.traceStats.Exported() + g.build.traceStats.Dropped(); n != 0 {
		t.Fatalf("%d spans reached the queue, want none", n)
	}
}

// TestSampledRequestAllocatesNothing is the proxied request with tracing on and every request
// sampled: a server span and a client span, recorded in pooled records (tracing.Span) and
// queued for export, without an allocation. It was 49 allocations with the SDK's spans, 14 with
// their attributes set once and the strings copied once (docs/benchmarks.md).
//
// The export is not in the count: the warm-up's spans are exported (and their records go back
// to the pool) before counting starts, and the queue then holds every span until the test
// ends, since one batch would be the whole queue and its timer is an hour away.
func TestSampledRequestAllocatesNothing(t *testing.T) {
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer collector.Close()
	g := newAllocGateway(t, fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
server:
  tracing: {endpoint: %q, sample_ratio: 1, queue_size: 16384, batch_size: 16384, batch_timeout: 1h}
upstreams:
  products: {targets: ["products.internal:80"]}
routes:
  - name: products
    match: {path_prefix: /api/products}
    strip_prefix: /api
    upstream: products
`, collector.URL), nil)
	d := newRequestDriver(benchRequest)
	const warm = 2000
	for range warm {
		if code := d.run(t, g); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	// Export the warm-up's 4000 spans: their records return to the pool, more than the
	// counted requests take.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := g.Snapshot().Tracer.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := g.build.traceStats.Exported(); n != 2*warm {
		t.Fatalf("%d spans exported after the warm-up, want %d (dropped %d: %s)", n, 2*warm, g.build.traceStats.Dropped(), g.build.traceStats.LastError())
	}
	allocs := testing.AllocsPerRun(1000, func() { d.run(t, g) })
	if allocs != 0 {
		t.Fatalf("a sampled request allocates %.2f times in steady state, want 0", allocs)
	}
	if n := g.build.traceStats.Dropped(); n != 0 {
		t.Fatalf("%d spans dropped: the queue was meant to hold them all", n)
	}
}
