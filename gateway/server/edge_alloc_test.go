//go:build !race

// Allocation counts are only meaningful without the race detector, which makes sync.Pool drop
// objects on purpose; `make test` runs these in a separate pass without -race.

package server

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/auth/authtest"
	"github.com/archway-gateway/archway/gateway/policies"
)

// edgeBench is an in-memory gateway (see inMemoryGateway) with the edge policies on a route
// each: CORS, gzip, static files and JWT.
type edgeBench struct {
	g     *Gateway
	token string
	stop  func()
}

func newEdgeBench(tb testing.TB) *edgeBench {
	tb.Helper()
	root := tb.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "assets"), 0o755); err != nil {
		tb.Fatal(err)
	}
	for name, body := range map[string]string{"index.html": "<!doctype html>", "assets/app-DiwrgTda.js": strings.Repeat("x();", 1000)} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	key := authtest.NewKey(tb)
	jwks := authtest.NewJWKSServer(tb, key.JWK())

	pol := policies.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	g := newAllocGateway(tb, fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
jwt: {jwks_url: "%s", issuer: archway-users, audience: archway}
upstreams:
  products: {targets: ["products.internal:80"]}
routes:
  - name: cors
    match: {path_prefix: /api/cors}
    upstream: products
    cors: {origins: ["https://shop.example.com"], credentials: true, expose_headers: [X-Request-Id]}
  - name: gzip
    match: {path_prefix: /api/gzip}
    upstream: products
    compression: {min_size: 0}
  - name: jwt
    match: {path_prefix: /api/jwt}
    upstream: products
    auth: {jwt: required, forward_claims: {sub: X-User-Id, email: X-User-Email, role: X-User-Role}}
  - name: static
    match: {path_prefix: /}
    static: {root: "%s", spa_fallback: index.html}
`, jwks.URL(), root), nil, func(o *Options) { o.Policies = pol })
	deadline := time.Now().Add(5 * time.Second)
	for !pol.Tokens.KeySet(jwks.URL()).HasKeys() {
		if time.Now().After(deadline) {
			tb.Fatal("no JWKS")
		}
		time.Sleep(time.Millisecond)
	}
	return &edgeBench{g: g, token: key.Token(tb, authtest.Claims("42")), stop: pol.Close}
}

func (e *edgeBench) requests() map[string]string {
	const head = "Host: shop.example.com\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n"
	return map[string]string{
		"cors":         "GET /api/cors/1 HTTP/1.1\r\n" + head + "Origin: https://shop.example.com\r\n\r\n",
		"preflight":    "OPTIONS /api/cors/1 HTTP/1.1\r\n" + head + "Origin: https://shop.example.com\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: authorization\r\n\r\n",
		"gzip":         "GET /api/gzip/1 HTTP/1.1\r\n" + head + "Accept-Encoding: gzip, br\r\n\r\n",
		"gzip-refused": "GET /api/gzip/1 HTTP/1.1\r\n" + head + "Accept-Encoding: identity\r\n\r\n",
		"static":       "GET /assets/app-DiwrgTda.js HTTP/1.1\r\n" + head + "\r\n",
		"static-304":   "GET /assets/app-DiwrgTda.js HTTP/1.1\r\n" + head + "If-Modified-Since: " + time.Now().Add(time.Hour).UTC().Format(http.TimeFormat) + "\r\n\r\n",
		"jwt":          "GET /api/jwt/1 HTTP/1.1\r\n" + head + "Authorization: Bearer " + e.token + "\r\nX-User-Id: 1\r\n\r\n",
		"jwt-missing":  "GET /api/jwt/1 HTTP/1.1\r\n" + head + "\r\n",
	}
}

// TestEdgePolicyRequestAllocatesNothing holds the edge policies' request paths at zero
// allocations in steady state: a CORS request and preflight, a response gzip leaves alone, a
// static file hit and its 304, a JWT-verified request with forwarded claims, and a refused one.
//
// A gzipped response is the exception, measured and bounded here: compression itself allocates
// nothing (writers and buffers are pooled), but fasthttp's response-body pool calibrates itself
// (every 42000 uses) to the lengths of the bodies it sees and then drops a buffer whose capacity
// is well over that; a compressed body is by nature shorter than the buffer that held it, so
// once calibrated the pool replaces such buffers: a new buffer, its first array and the growth
// of that array to the next upstream body, three small allocations per compressed response.
// The warm-up runs past the calibration so the count is the steady state's.
func TestEdgePolicyRequestAllocatesNothing(t *testing.T) {
	e := newEdgeBench(t)
	defer e.stop()
	want := map[string]int{"cors": 200, "preflight": 204, "gzip": 200, "gzip-refused": 200, "static": 200, "static-304": 304, "jwt": 200, "jwt-missing": 401}
	// Every case warms up past one calibration period of fasthttp's body-buffer pool (42000
	// uses), so the pool is tuned to its own workload whatever ran before it.
	const warmUp = fasthttpBodyPoolCalibration
	limit := map[string]float64{"gzip": 3}
	for name, raw := range e.requests() {
		t.Run(name, func(t *testing.T) {
			d := newRequestDriver(raw)
			allocs := d.steadyAllocs(t, e.g.entry.Handle, want[name], warmUp, 1000)
			t.Logf("%.2f allocations per request", allocs)
			if allocs > limit[name] {
				t.Fatalf("%.2f allocations per request in steady state, want at most %.0f", allocs, limit[name])
			}
		})
	}
}

// BenchmarkEdge measures each edge policy's request through the whole gateway path (entry,
// routing, policy, in-memory upstream or file, finish).
func BenchmarkEdge(b *testing.B) {
	e := newEdgeBench(b)
	defer e.stop()
	for _, name := range []string{"cors", "preflight", "gzip", "gzip-refused", "static", "static-304", "jwt", "jwt-missing"} {
		b.Run(name, func(b *testing.B) {
			d := newRequestDriver(e.requests()[name])
			b.ReportAllocs()
			for b.Loop() {
				d.run(b, e.g)
			}
		})
	}
}
