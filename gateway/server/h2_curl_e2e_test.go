package server_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/gateway/auth/authtest"
	"github.com/archway-gateway/archway/internal/testenv"
)

// TestHTTP2PoliciesWithCurl drives every policy over HTTP/2 with curl, as a client would:
// --http2-prior-knowledge on the h2c listener and ALPN h2 on the TLS listener. Each answer must
// be the one the policy gives over HTTP/1.1, and curl must report HTTP/2.
func TestHTTP2PoliciesWithCurl(t *testing.T) {
	testenv.RequireBinary(t, "curl")
	key := authtest.NewKey(t)
	jwks := authtest.NewJWKSServer(t, key.JWK())
	token := key.Token(t, authtest.Claims("42"))
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("<h1>shop</h1>"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("compress me please ", 200)
	app := startHTTPUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/big"):
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", fmt.Sprint(len(big))) // the policy compresses declared lengths
			_, _ = io.WriteString(w, big)
		case strings.HasPrefix(r.URL.Path, "/events"):
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
			}
		default:
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Cache-Control", "max-age=60")
			fmt.Fprintf(w, "app %s user=%s", r.URL.RequestURI(), r.Header.Get("X-User-Id"))
		}
	})
	g := startH2Gateway(t, "", fmt.Sprintf(`
access_log: {enabled: false}
jwt: {jwks_url: "%s", issuer: archway-users, audience: archway}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: limited, match: {path_prefix: /limited}, upstream: app, rate_limit: {rate: 1/m, burst: 2, key: "header:X-Kind"}}
  - {name: cached, match: {path_prefix: /cached}, upstream: app, cache: {ttl: 60s}}
  - {name: private, match: {path_prefix: /private}, upstream: app, auth: {jwt: required, forward_claims: {sub: X-User-Id}}}
  - name: cors
    match: {path_prefix: /cors}
    upstream: app
    cors: {origins: ["https://shop.example.com"]}
  - {name: gzip, match: {path_prefix: /big}, upstream: app, compression: {min_size: 0}}
  - {name: events, match: {path_prefix: /events}, upstream: app}
  - {name: api, match: {path_prefix: /api/}, upstream: app, strip_prefix: /api}
  - {name: site, match: {path_prefix: /}, static: {root: "%s"}}
`, jwks.URL(), app, root))

	port := portOf(g.tls)
	bases := map[string][]string{
		"h2c": {"--http2-prior-knowledge", "http://" + g.plain},
		"h2":  {"--http2", "--cacert", g.pki.ca.CertFile, "--resolve", "shop.test:" + port + ":127.0.0.1", "https://shop.test:" + port},
	}
	for kind, b := range bases {
		flags, base := b[:len(b)-1], b[len(b)-1]
		curl := func(t *testing.T, path string, args ...string) (status int, head, body string) {
			t.Helper()
			all := append([]string{"-sS", "--max-time", "20", "-D", "-", "-o", "-"}, flags...)
			all = append(all, args...)
			out, err := run(t, "curl", append(all, base+path)...)
			if err != nil {
				t.Fatalf("curl %s: %v\n%s", path, err, out)
			}
			head, body, _ = strings.Cut(out, "\r\n\r\n")
			if !strings.HasPrefix(head, "HTTP/2 ") {
				t.Fatalf("curl %s did not speak HTTP/2:\n%s", path, head)
			}
			_, _ = fmt.Sscanf(head, "HTTP/2 %d", &status)
			return status, strings.ToLower(head), body
		}
		t.Run(kind, func(t *testing.T) {
			if s, _, body := curl(t, "/api/items?q=1"); s != 200 || !strings.HasPrefix(body, "app /items?q=1") {
				t.Errorf("strip prefix: %d %q", s, body)
			}
			for i := range 2 {
				if s, h, _ := curl(t, "/limited", "-H", "X-Kind: "+kind); s != 200 || !strings.Contains(h, "ratelimit-remaining: "+fmt.Sprint(1-i)) {
					t.Errorf("rate limit %d: %d\n%s", i, s, h)
				}
			}
			if s, h, _ := curl(t, "/limited", "-H", "X-Kind: "+kind); s != 429 || !strings.Contains(h, "retry-after:") {
				t.Errorf("rate limit: %d\n%s", s, h)
			}
			curl(t, "/cached/a")
			if s, h, _ := curl(t, "/cached/a"); s != 200 || !strings.Contains(h, "x-cache: hit") {
				t.Errorf("cache: %d\n%s", s, h)
			}
			if s, h, _ := curl(t, "/private/me"); s != 401 || !strings.Contains(h, "www-authenticate: bearer") {
				t.Errorf("jwt without a token: %d\n%s", s, h)
			}
			waitUntil(t, "a valid token is accepted over "+kind, func() bool {
				s, _, body := curl(t, "/private/me", "-H", "Authorization: Bearer "+token)
				return s == 200 && strings.HasSuffix(body, "user=42")
			})
			if s, h, _ := curl(t, "/cors/x", "-X", "OPTIONS", "-H", "Origin: https://shop.example.com", "-H", "Access-Control-Request-Method: GET"); s != 204 || !strings.Contains(h, "access-control-allow-origin: https://shop.example.com") {
				t.Errorf("cors preflight: %d\n%s", s, h)
			}
			if s, h, body := curl(t, "/big", "--compressed"); s != 200 || !strings.Contains(h, "content-encoding: ") || body != big {
				t.Errorf("compression: %d %d bytes\n%s", s, len(body), h)
			}
			if s, _, body := curl(t, "/events", "-N"); s != 200 || body != "data: 0\n\ndata: 1\n\ndata: 2\n\n" {
				t.Errorf("streaming: %d %q", s, body)
			}
			if s, h, body := curl(t, "/index.html"); s != 200 || body != "<h1>shop</h1>" || !strings.Contains(h, "content-type: text/html") {
				t.Errorf("static: %d %q\n%s", s, body, h)
			}
			if s, _, body := curl(t, "/nowhere/x.png"); s != 404 || strings.Contains(body, "127.0.0.1") {
				t.Errorf("not found: %d %q", s, body)
			}
		})
	}
	if n := g.counter(t, "archway_requests_total", map[string]string{"protocol": "HTTP/2"}); n < 20 {
		t.Errorf("archway_requests_total{protocol=\"HTTP/2\"} = %v", n)
	}
	if n := g.counter(t, "archway_requests_total", map[string]string{"protocol": "HTTP/1.1"}); n != 0 {
		t.Errorf("archway_requests_total{protocol=\"HTTP/1.1\"} = %v, want 0", n)
	}
}
