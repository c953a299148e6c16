//go:build !race

package server

import (
	"fmt"
	"testing"

	"github.com/archway-gateway/archway/gateway/listener/listenertest"
)

// TestTLSListenerRequestAllocatesNothing: on a TLS listener with HSTS, a client certificate
// header and routes limited to listeners, a proxied request still allocates nothing (the https
// scheme in X-Forwarded-Proto and Forwarded, the header stripping, the listener's own table);
// and the plain listener's HTTPS redirect stays cheap.
func TestTLSListenerRequestAllocatesNothing(t *testing.T) {
	dir := t.TempDir()
	ca := listenertest.NewCA(t, dir, "alloc")
	cert := ca.Issue(t, "shop", listenertest.Options{}, "shop.example.com")
	g := newAllocGateway(t, fmt.Sprintf(`
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
`, cert.CertFile, cert.KeyFile, ca.CertFile), nil)
	d := newRequestDriver(benchRequest)
	allocs := d.steadyAllocs(t, g.entry.Handle, 200, fasthttpBodyPoolCalibration, 2000)
	if got := string(d.ctx.Request.Header.Peek("X-Forwarded-Proto")); got != "https" {
		t.Fatalf("X-Forwarded-Proto = %q", got)
	}
	if allocs != 0 {
		t.Fatalf("a proxied request on a TLS listener allocates %.2f times, want 0", allocs)
	}

	redirect := newRequestDriver(benchRequest)
	handler := g.entry.ListenerHandler(1)
	if code := redirect.runWith(t, handler); code != 308 {
		t.Fatalf("redirect listener answered %d", code)
	}
	if allocs := redirect.steadyAllocs(t, handler, 308, 0, 500); allocs != 0 {
		t.Errorf("an HTTPS redirect allocates %.2f times, want 0", allocs)
	}
}
