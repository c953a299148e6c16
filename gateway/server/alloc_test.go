//go:build !race

// Allocation counts are only meaningful without the race detector, which makes sync.Pool drop
// objects on purpose; `make test` runs these in a separate pass without -race.

package server

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

var kilobyteJSON = []byte(`{"items":[` + strings.Repeat(`{"id":1,"name":"Laptop Gaming","price":1299.99},`, 20) + `{"id":0}]}`)

// This file holds the scaffolding every allocation test of the package shares: an upstream on
// an in-memory listener, a gateway built from a configuration that dials it, a driver that
// feeds one raw request through a handler as the fasthttp server does, and the warm-up before
// testing.AllocsPerRun.

// serveKilobyteJSON is the upstream of the allocation tests: about 1 KiB of JSON.
func serveKilobyteJSON(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	ctx.Response.SetBodyRaw(kilobyteJSON)
}

// inMemoryUpstream serves handler (nil: serveKilobyteJSON) on an in-memory listener until the
// test ends, and returns a dialler for it, so a request's whole path (entry, routing, headers,
// pool, round trip, response) runs in this process without the kernel's network stack.
func inMemoryUpstream(tb testing.TB, handler fasthttp.RequestHandler) upstream.Dialer {
	tb.Helper()
	if handler == nil {
		handler = serveKilobyteJSON
	}
	ln := fasthttputil.NewInmemoryListener()
	up := &fasthttp.Server{Handler: handler}
	go func() { _ = up.Serve(ln) }()
	tb.Cleanup(func() { _ = up.Shutdown(); _ = ln.Close() })
	return func(string, time.Duration) (net.Conn, error) { return ln.Dial() }
}

// newAllocGateway is a gateway built from yaml whose upstream connections, whatever their
// target, go to an in-memory upstream serving handler (nil: serveKilobyteJSON). opts adjust
// the options (policies) before the gateway is built.
func newAllocGateway(tb testing.TB, yaml string, handler fasthttp.RequestHandler, opts ...func(*Options)) *Gateway {
	tb.Helper()
	cfg, err := config.Parse([]byte(yaml), "alloc.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	o := Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Dial:   inMemoryUpstream(tb, handler),
	}
	for _, f := range opts {
		f(&o)
	}
	g, err := New(cfg, o)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// inMemoryGateway is the gateway of the plain proxied request: one route to an upstream of two
// targets, the access log off.
func inMemoryGateway(tb testing.TB) *Gateway {
	tb.Helper()
	return newAllocGateway(tb, `
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  products: {targets: ["products.internal:80", "products2.internal:80"]}
routes:
  - name: products
    match: {path_prefix: /api/products, methods: [GET, HEAD, POST]}
    strip_prefix: /api
    upstream: products
`, nil)
}

// allocsAfterWarmUp runs f warm times, then returns testing.AllocsPerRun(runs, f): the steady
// state's allocations, once pools and buffers have grown to the workload.
func allocsAfterWarmUp(warm, runs int, f func()) float64 {
	for range warm {
		f()
	}
	return testing.AllocsPerRun(runs, f)
}

// fasthttpBodyPoolCalibration is how many requests the allocation tests warm up with when the
// count must not depend on what ran before: past one calibration period of fasthttp's
// body-buffer pool (42000 uses), the pool is tuned to the test's own workload.
const fasthttpBodyPoolCalibration = 45000

// requestDriver feeds one raw request through the gateway's entry handler, the way the fasthttp
// server does: parse into a RequestCtx, call the handler, drop the response.
type requestDriver struct {
	raw    []byte
	rd     *bytes.Reader
	br     *bufio.Reader
	req    fasthttp.Request // empty; Init copies it once
	ctx    fasthttp.RequestCtx
	remote net.Addr
}

func newRequestDriver(raw string) *requestDriver {
	d := &requestDriver{raw: []byte(raw), rd: bytes.NewReader(nil), remote: &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 40000}}
	d.br = bufio.NewReaderSize(d.rd, 4096)
	// Init wraps a fake connection (one allocation); done once, as the server does per connection.
	d.ctx.Init(&d.req, d.remote, nil)
	return d
}

// run sends the request through the gateway's entry handler and returns the status.
func (d *requestDriver) run(tb testing.TB, g *Gateway) int { return d.runWith(tb, g.entry.Handle) }

// runWith sends the request through handler (a listener's own handler) and returns the status.
func (d *requestDriver) runWith(tb testing.TB, handler fasthttp.RequestHandler) int {
	d.rd.Reset(d.raw)
	d.br.Reset(d.rd)
	d.ctx.Request.Reset()
	if err := d.ctx.Request.Read(d.br); err != nil {
		tb.Fatal(err)
	}
	handler(&d.ctx)
	code := d.ctx.Response.StatusCode()
	d.ctx.Response.Reset()
	return code
}

// steadyAllocs warms handler up with warm requests, then returns the allocations per request
// over runs more; every answer must have status want (0: any).
func (d *requestDriver) steadyAllocs(tb testing.TB, handler fasthttp.RequestHandler, want, warm, runs int) float64 {
	tb.Helper()
	return allocsAfterWarmUp(warm, runs, func() {
		if code := d.runWith(tb, handler); want != 0 && code != want {
			tb.Fatalf("status %d, want %d", code, want)
		}
	})
}

const benchRequest = "GET /api/products/42?sort=price HTTP/1.1\r\nHost: shop.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: application/json\r\nAccept-Encoding: gzip, br\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\nConnection: keep-alive\r\n\r\n"

// TestProxiedRequestAllocatesNothing holds the gateway's steady state at zero allocations per
// proxied request: entry, header hygiene, routing, forwarding headers, target pick, upstream
// round trip over a pooled connection, response finishing and metrics.
func TestProxiedRequestAllocatesNothing(t *testing.T) {
	g := inMemoryGateway(t)
	d := newRequestDriver(benchRequest)
	// Warm up past one calibration period of fasthttp's body-buffer pool (42000 uses), so the
	// pool is tuned to this workload whatever other tests in the process did before.
	allocs := d.steadyAllocs(t, g.entry.Handle, 200, fasthttpBodyPoolCalibration, 2000)
	if allocs != 0 {
		t.Fatalf("a proxied request allocates %.2f times in steady state, want 0", allocs)
	}
	// The error paths a client can trigger at will stay cheap too.
	for _, raw := range []string{
		"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
		"DELETE /api/products/1 HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		bad := newRequestDriver(raw)
		if allocs := bad.steadyAllocs(t, g.entry.Handle, 0, 1, 500); allocs > 2 {
			t.Errorf("%q: %.1f allocations per request", strings.Fields(raw)[1], allocs)
		}
	}
}

// BenchmarkProxy measures the gateway's own cost per proxied request (plus the in-memory
// upstream's), single goroutine and parallel.
func BenchmarkProxy(b *testing.B) {
	g := inMemoryGateway(b)
	b.Run("serial", func(b *testing.B) {
		d := newRequestDriver(benchRequest)
		b.ReportAllocs()
		for b.Loop() {
			d.run(b, g)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			d := newRequestDriver(benchRequest)
			for pb.Next() {
				d.run(b, g)
			}
		})
	})
}
