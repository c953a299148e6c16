//go:build !race

package server

import (
	"bufio"
	"io"
	"log/slog"
	"testing"

	"github.com/archway-gateway/archway/gateway/policies"
)

// cacheHitRequests are cache hits as clients send them: a load generator's bare request, and a
// browser's, whose many fields every check of the hit path reads past.
var cacheHitRequests = map[string]string{
	"bare": "GET /cached/item HTTP/1.1\r\nHost: 127.0.0.1:18080\r\n\r\n",
	"browser": "GET /cached/item?page=2&sort=name HTTP/1.1\r\nHost: shop.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: application/json\r\nAccept-Encoding: gzip, br\r\n" +
		"Accept-Language: en-US,en;q=0.9\r\nConnection: keep-alive\r\n\r\n",
}

// cacheGateway is the benchmark's cache route (bench/routes.yaml: ttl 600s, nothing else, no
// security headers) on an in-memory gateway with the whole policy table.
func cacheGateway(tb testing.TB) *Gateway {
	tb.Helper()
	pol := policies.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	tb.Cleanup(pol.Close)
	return newAllocGateway(tb, `
server: {security_headers: {}}
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  fixed: {targets: ["fixed.internal:80"]}
routes:
  - name: cached
    match: {path_prefix: /cached}
    upstream: fixed
    cache: {ttl: 600s}
`, nil, func(o *Options) { o.Policies = pol })
}

// hitDriver sends one request through the gateway's entry handler and writes the response as
// fasthttp's server does, to nowhere: the whole of a hit's work in user space but for the
// system calls.
type hitDriver struct {
	*requestDriver
	bw *bufio.Writer
}

func newHitDriver(raw string) *hitDriver {
	return &hitDriver{requestDriver: newRequestDriver(raw), bw: bufio.NewWriterSize(io.Discard, 16<<10)}
}

// run serves the request and fails tb unless the answer is a 200 with X-Cache want ("": any).
func (d *hitDriver) run(tb testing.TB, g *Gateway, want string) {
	d.rd.Reset(d.raw)
	d.br.Reset(d.rd)
	d.ctx.Request.Reset()
	if err := d.ctx.Request.Read(d.br); err != nil {
		tb.Fatal(err)
	}
	g.entry.Handle(&d.ctx)
	if code, xc := d.ctx.Response.StatusCode(), d.ctx.Response.Header.Peek("X-Cache"); code != 200 || (want != "" && string(xc) != want) {
		tb.Fatalf("%d, X-Cache %q; want 200, %s", code, xc, want)
	}
	if err := d.ctx.Response.Write(d.bw); err != nil {
		tb.Fatal(err)
	}
	_ = d.bw.Flush()
	d.ctx.Response.Reset()
}

// TestCacheHitThroughGatewayAllocatesNothing holds a cache hit, from the entry handler through
// the cache to the written response, at zero allocations.
func TestCacheHitThroughGatewayAllocatesNothing(t *testing.T) {
	g := cacheGateway(t)
	for name, raw := range cacheHitRequests {
		t.Run(name, func(t *testing.T) {
			d := newHitDriver(raw)
			d.run(t, g, "MISS")
			allocs := allocsAfterWarmUp(2000, 2000, func() { d.run(t, g, "HIT") })
			if allocs != 0 {
				t.Fatalf("a cache hit allocates %.2f times, want 0", allocs)
			}
		})
	}
}

// BenchmarkCacheHit measures a cache hit's user-space cost in the gateway: parse, entry, cache,
// finish, response serialisation (no system calls).
func BenchmarkCacheHit(b *testing.B) {
	g := cacheGateway(b)
	for _, name := range []string{"bare", "browser"} {
		b.Run(name, func(b *testing.B) {
			d := newHitDriver(cacheHitRequests[name])
			d.run(b, g, "") // a MISS the first time
			b.ReportAllocs()
			for b.Loop() {
				d.run(b, g, "HIT")
			}
		})
	}
}
