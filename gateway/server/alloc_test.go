//go:build !race

// Allocation counts are only meaningful without the race detector, which makes sync.Pool drop
// objects on purpose; `make test` runs these in a separate pass without -race.

package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

var kilobyteJSON = []byte(`{"items":[` + strings.Repeat(`{"id":1,"name":"Laptop Gaming","price":1299.99},`, 20) + `{"id":0}]}`)

// inMemoryGateway is a gateway whose single upstream is a fasthttp server on an in-memory
// listener, so a request's whole path (entry, routing, headers, pool, round trip, response)
// runs in this process without the kernel's network stack.
func inMemoryGateway(tb testing.TB, extraRoute string) (*Gateway, func()) {
	tb.Helper()
	ln := fasthttputil.NewInmemoryListener()
	up := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(kilobyteJSON)
	}}
	go func() { _ = up.Serve(ln) }()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  products: {targets: ["products.internal:80", "products2.internal:80"]}
routes:
  - name: products
    match: {path_prefix: /api/products, methods: [GET, HEAD, POST]}
    strip_prefix: /api
    upstream: products
%s`, extraRoute)), "bench.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	g, err := New(cfg, Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Dial:   func(string, time.Duration) (net.Conn, error) { return ln.Dial() },
	})
	if err != nil {
		tb.Fatal(err)
	}
	return g, func() { _ = up.Shutdown(); _ = ln.Close() }
}

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

func (d *requestDriver) run(tb testing.TB, g *Gateway) int {
	d.rd.Reset(d.raw)
	d.br.Reset(d.rd)
	d.ctx.Request.Reset()
	if err := d.ctx.Request.Read(d.br); err != nil {
		tb.Fatal(err)
	}
	g.entry.Handle(&d.ctx)
	code := d.ctx.Response.StatusCode()
	d.ctx.Response.Reset()
	return code
}

const benchRequest = "GET /api/products/42?sort=price HTTP/1.1\r\nHost: shop.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: application/json\r\nAccept-Encoding: gzip, br\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\nConnection: keep-alive\r\n\r\n"

// TestProxiedRequestAllocatesNothing holds the gateway's steady state at zero allocations per
// proxied request: entry, header hygiene, routing, forwarding headers, target pick, upstream
// round trip over a pooled connection, response finishing and metrics.
func TestProxiedRequestAllocatesNothing(t *testing.T) {
	g, stop := inMemoryGateway(t, "")
	defer stop()
	d := newRequestDriver(benchRequest)
	// Warm up past one calibration period of fasthttp's body-buffer pool (42000 uses), so the
	// pool is tuned to this workload whatever other tests in the process did before.
	for range 45000 {
		if code := d.run(t, g); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	allocs := testing.AllocsPerRun(2000, func() { d.run(t, g) })
	if allocs != 0 {
		t.Fatalf("a proxied request allocates %.2f times in steady state, want 0", allocs)
	}
	// The error paths a client can trigger at will stay cheap too.
	for _, raw := range []string{
		"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
		"DELETE /api/products/1 HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		bad := newRequestDriver(raw)
		bad.run(t, g)
		if allocs := testing.AllocsPerRun(500, func() { bad.run(t, g) }); allocs > 2 {
			t.Errorf("%q: %.1f allocations per request", strings.Fields(raw)[1], allocs)
		}
	}
}

// BenchmarkProxy measures the gateway's own cost per proxied request (plus the in-memory
// upstream's), single goroutine and parallel.
func BenchmarkProxy(b *testing.B) {
	g, stop := inMemoryGateway(b, "")
	defer stop()
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
