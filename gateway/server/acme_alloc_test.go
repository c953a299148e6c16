//go:build !race

package server

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestACMEPlainListenerAllocatesNothing: the HTTP-01 check in front of a plain listener (here
// one that redirects to an ACME listener) adds no allocation to an ordinary request.
func TestACMEPlainListenerAllocatesNothing(t *testing.T) {
	g := newAllocGateway(t, fmt.Sprintf(`
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
`, t.TempDir()), nil)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	}()
	handler := g.listeners[0].server.Handler
	d := newRequestDriver(benchRequest)
	if code := d.runWith(t, handler); code != 308 {
		t.Fatalf("plain listener answered %d, want 308", code)
	}
	if allocs := d.steadyAllocs(t, handler, 308, 0, 500); allocs != 0 {
		t.Errorf("a request on the plain listener allocates %.2f times, want 0", allocs)
	}
}
