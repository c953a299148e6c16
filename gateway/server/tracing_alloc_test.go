//go:build !race

package server

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"testing"

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

// sampledRequestAllocs bounds what a sampled request allocates on its way through (the
// export is not in the count: the queue holds every span until the test ends). What remains
// is the SDK's: for each of the two spans its record, its context, its copy of the attributes,
// its snapshot and the map that de-duplicates the attributes; and the request's own: one block
// for its strings, the start time option and the span name.
const sampledRequestAllocs = 24

// TestSampledRequestAllocations is the proxied request with tracing on and every request
// sampled: a server span and a client span, each attribute set once, the request's strings
// copied once. It holds the count down (it was 49 before each span's attributes were set once
// and its strings copied once; docs/benchmarks.md has what the rest costs).
func TestSampledRequestAllocations(t *testing.T) {
	// Nothing is exported while the test counts: one batch would be the whole queue, and its
	// timer is an hour away.
	g := newAllocGateway(t, `
admin: {listen: ""}
access_log: {enabled: false}
server:
  tracing: {endpoint: "http://127.0.0.1:9", sample_ratio: 1, queue_size: 16384, batch_size: 16384, batch_timeout: 1h}
upstreams:
  products: {targets: ["products.internal:80"]}
routes:
  - name: products
    match: {path_prefix: /api/products}
    strip_prefix: /api
    upstream: products
`, nil)
	d := newRequestDriver(benchRequest)
	allocs := d.steadyAllocs(t, g.entry.Handle, 200, 2000, 1000)
	t.Logf("a sampled request allocates %.1f times", allocs)
	if allocs > sampledRequestAllocs {
		t.Fatalf("a sampled request allocates %.1f times, want at most %d", allocs, sampledRequestAllocs)
	}
	if n := g.build.traceStats.Dropped(); n != 0 {
		t.Fatalf("%d spans dropped: the queue was meant to hold them all", n)
	}
}
