//go:build !race

package server

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/listener/listenertest"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// TestTLSListenerRequestAllocatesNothing: on a TLS listener with HSTS, a client certificate
// header and routes limited to listeners, a proxied request still allocates nothing (the https
// scheme in X-Forwarded-Proto and Forwarded, the header stripping, the listener's own table);
// and the plain listener's HTTPS redirect stays cheap.
func TestTLSListenerRequestAllocatesNothing(t *testing.T) {
	dir := t.TempDir()
	ca := listenertest.NewCA(t, dir, "alloc")
	cert := ca.Issue(t, "shop", listenertest.Options{}, "shop.example.com")
	ln := fasthttputil.NewInmemoryListener()
	up := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.Response.SetBodyRaw(kilobyteJSON) }}
	go func() { _ = up.Serve(ln) }()
	defer func() { _ = up.Shutdown(); _ = ln.Close() }()
	cfg, err := config.Parse(fmt.Appendf(nil, `
server:
  listeners:
    - name: https
      addr: "127.0.0.1:0"
      tls:
        certificates: [{cert: %s, key: %s}]
        client_auth: optional
        client_ca: %s
        client_cert_header: X-Client-Subject
        hsts: "max-age=31536000"
    - {name: http, addr: "127.0.0.2:0", redirect_https: true}
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  products: {targets: ["products.internal:80"]}
routes:
  - {name: products, match: {path_prefix: /api/products, listeners: [https]}, strip_prefix: /api, upstream: products}
`, cert.CertFile, cert.KeyFile, ca.CertFile), "alloc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Dial:   func(string, time.Duration) (net.Conn, error) { return ln.Dial() },
	})
	if err != nil {
		t.Fatal(err)
	}
	d := newRequestDriver(benchRequest + "")
	for range 45000 {
		if code := d.run(t, g); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	if got := string(d.ctx.Request.Header.Peek("X-Forwarded-Proto")); got != "https" {
		t.Fatalf("X-Forwarded-Proto = %q", got)
	}
	if allocs := testing.AllocsPerRun(2000, func() { d.run(t, g) }); allocs != 0 {
		t.Fatalf("a proxied request on a TLS listener allocates %.2f times, want 0", allocs)
	}

	redirect := newRequestDriver(benchRequest)
	handler := g.entry.ListenerHandler(1)
	run := func() int {
		redirect.rd.Reset(redirect.raw)
		redirect.br.Reset(redirect.rd)
		redirect.ctx.Request.Reset()
		if err := redirect.ctx.Request.Read(redirect.br); err != nil {
			t.Fatal(err)
		}
		handler(&redirect.ctx)
		code := redirect.ctx.Response.StatusCode()
		redirect.ctx.Response.Reset()
		return code
	}
	if code := run(); code != 308 {
		t.Fatalf("redirect listener answered %d", code)
	}
	if allocs := testing.AllocsPerRun(500, func() { run() }); allocs != 0 {
		t.Errorf("an HTTPS redirect allocates %.2f times, want 0", allocs)
	}
}
