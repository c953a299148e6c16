//go:build !race

package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
)

// TestACMEPlainListenerAllocatesNothing: the HTTP-01 check in front of a plain listener (here
// one that redirects to an ACME listener) adds no allocation to an ordinary request.
func TestACMEPlainListenerAllocatesNothing(t *testing.T) {
	cfg, err := config.Parse(fmt.Appendf(nil, `
server:
  listeners:
    - {name: http, addr: "127.0.0.2:0", redirect_https: true}
    - name: https
      addr: "127.0.0.1:0"
      tls:
        acme: {hosts: [shop.example.com], directory: "https://127.0.0.1:1/dir", storage: %s}
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  products: {targets: ["products.internal:80"]}
routes:
  - {name: products, match: {path_prefix: /api/products}, upstream: products}
`, t.TempDir()), "alloc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	}()
	handler := g.listeners[0].server.Handler
	d := newRequestDriver(benchRequest)
	run := func() int {
		d.rd.Reset(d.raw)
		d.br.Reset(d.rd)
		d.ctx.Request.Reset()
		if err := d.ctx.Request.Read(d.br); err != nil {
			t.Fatal(err)
		}
		handler(&d.ctx)
		code := d.ctx.Response.StatusCode()
		d.ctx.Response.Reset()
		return code
	}
	if code := run(); code != 308 {
		t.Fatalf("plain listener answered %d, want 308", code)
	}
	if allocs := testing.AllocsPerRun(500, func() { run() }); allocs != 0 {
		t.Errorf("a request on the plain listener allocates %.2f times, want 0", allocs)
	}
}
