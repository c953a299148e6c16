//go:build !race

// Allocation counts are only meaningful without the race detector, which makes sync.Pool drop
// objects on purpose; `make test` runs these in a separate pass without -race.

package upstream

import (
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/valyala/fasthttp"
)

func TestDoAllocatesNothing(t *testing.T) {
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(kilobyte) })
	tg := newTarget("app", b.addr, 1, testSettings())
	req := fasthttp.AcquireRequest()
	req.SetRequestURI("/x")
	req.Header.SetHost("b")
	resp := &fasthttp.Response{}
	x := newRoundTrip(2 * time.Second)
	for range 10 {
		if err := tg.Do(req, resp, x); err != nil {
			t.Fatal(err)
		}
	}
	// Over a real TCP connection Do writes and waits through send's raw path (send.go).
	if pc := tg.pool.slots[0]; pc == nil || pc.raw == nil {
		t.Fatal("the connection does not take the raw send path")
	}
	allocs := testing.AllocsPerRun(500, func() {
		if err := tg.Do(req, resp, x); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Target.Do allocates %.1f times per request", allocs)
	}
}

// TestIdleCheckAllocatesNothing: every reuse of an idle connection asks the kernel whether the
// upstream closed it; that question must cost no allocation either.
func TestIdleCheckAllocatesNothing(t *testing.T) {
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(kilobyte) })
	tg := newTarget("app", b.addr, 1, testSettings())
	req := fasthttp.AcquireRequest()
	req.SetRequestURI("/x")
	req.Header.SetHost("b")
	resp := &fasthttp.Response{}
	x := newRoundTrip(2 * time.Second)
	for range 10 {
		if err := tg.Do(req, resp, x); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(500, func() {
		pc := tg.pool.popIdle(x.Now)
		if pc == nil || pc.fd < 0 {
			t.Fatal("no idle connection with a socket to check")
		}
		tg.pool.release(pc, true, x.Now)
	})
	if allocs != 0 {
		t.Fatalf("the idle check allocates %.1f times per checkout", allocs)
	}
	if s := tg.Stats(); s.PeerClosed != 0 || s.Dials != 1 {
		t.Fatalf("stats %+v: an open idle connection was taken for closed", s)
	}
}

// TestDoOverTLSAllocatesOnlyInCryptoTLS: once a TLS connection is open, Archway's side of a
// round trip allocates nothing: records are sealed and opened in place, in the connection's
// buffers. What remains is crypto/tls's own: (*Conn).readFromUntil hands bytes.Buffer.ReadFrom
// an &atLeastReader{...}, which escapes through the io.Reader interface, once for every read of
// the socket a record needs (Go 1.26: two per round trip here, measured with -memprofile). The
// bound holds that figure; any allocation of ours on top fails it.
func TestDoOverTLSAllocatesOnlyInCryptoTLS(t *testing.T) {
	p := newTestPKI(t)
	b := startTLSBackend(t, p.server, nil, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(kilobyte) })
	tg := newTarget("app", b.addr, 1, tlsSettings(t, &config.UpstreamTLS{CAFile: p.ca.CertFile, ServerName: "backend.test"}))
	req := fasthttp.AcquireRequest()
	req.SetRequestURI("/x")
	req.Header.SetHost("backend.test")
	resp := &fasthttp.Response{}
	x := newRoundTrip(2 * time.Second)
	for range 10 {
		if err := tg.Do(req, resp, x); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(500, func() {
		if err := tg.Do(req, resp, x); err != nil {
			t.Fatal(err)
		}
	})
	const cryptoTLSRecordReads = 2
	if allocs > cryptoTLSRecordReads {
		t.Fatalf("Target.Do over TLS allocates %.1f times per request, want at most %d (crypto/tls's record reads)", allocs, cryptoTLSRecordReads)
	}
	if n := b.conns.Load(); n != 1 {
		t.Fatalf("%d connections: the measurement must be of one kept-alive TLS connection", n)
	}
}
