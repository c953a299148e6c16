//go:build !race

package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkTracedRequest is the proxied request of BenchmarkProxy with tracing off and with
// every request sampled, exporting OTLP/HTTP to a collector on loopback: the queue is flushed
// every 256 requests, so the export (encoding, sending) is in the time and records are reused
// as in a steady state. The collector runs in the same process, so the traced figure includes
// its reading of the body; tracing's own share is read from a CPU profile (-cpuprofile, the
// functions of gateway/tracing and proxy's trace functions; docs/benchmarks.md).
func BenchmarkTracedRequest(b *testing.B) {
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer collector.Close()
	for _, traced := range []bool{false, true} {
		tracing := ""
		if traced {
			tracing = fmt.Sprintf("server:\n  tracing: {endpoint: %q, sample_ratio: 1, queue_size: 65536, batch_size: 512, batch_timeout: 200ms}\n", collector.URL)
		}
		g := newAllocGateway(b, `
admin: {listen: ""}
access_log: {enabled: false}
`+tracing+`upstreams:
  products: {targets: ["products.internal:80", "products2.internal:80"]}
routes:
  - name: products
    match: {path_prefix: /api/products, methods: [GET, HEAD, POST]}
    strip_prefix: /api
    upstream: products
`, nil)
		b.Run(fmt.Sprintf("traced=%v", traced), func(b *testing.B) {
			d := newRequestDriver(benchRequest)
			for range 20000 { // records made, pools grown
				d.run(b, g)
			}
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				d.run(b, g)
				if i++; traced && i%256 == 0 {
					_ = g.Snapshot().Tracer.ForceFlush(context.Background())
				}
			}
		})
	}
}
