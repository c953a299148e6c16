package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func routingConfig(products, users string) string {
	return fmt.Sprintf(`
server:
  trusted_proxies: [10.0.0.0/8]
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  products: {targets: ["%s"]}
  users: {targets: ["%s"]}
routes:
  - name: products
    match: {path_prefix: /api/products, methods: [GET, HEAD, POST, PUT]}
    strip_prefix: /api
    upstream: products
    headers:
      request: {set: {X-Env: test}, remove: [X-Drop-Me]}
      response: {set: {Strict-Transport-Security: "max-age=31536000"}, remove: [X-Powered-By]}
  - name: login
    match: {path: /api/auth/login, methods: [POST]}
    strip_prefix: /api
    add_prefix: /v1
    upstream: users
  - name: users-host
    match: {path_prefix: /, host: "*.users.test"}
    upstream: users
  - name: api-unknown
    match: {path_prefix: /api}
    respond: {status: 404}
  - name: teapot
    match: {path: /teapot}
    respond: {status: 200, body: "short and stout"}
  - name: users-health
    match: {path: /health/users}
    strip_prefix: /health/users
    add_prefix: /health
    upstream: users
`, products, users)
}

func TestRoutingAndRewrite(t *testing.T) {
	products := startUpstream(t, "products", nil)
	users := startUpstream(t, "users", nil)
	gw := startGateway(t, routingConfig(products.Addr, users.Addr))

	tests := []struct {
		method, path, host string
		status             int
		body               string
	}{
		{"GET", "/api/products", "", 200, "products /products"},
		{"GET", "/api/products/42?sort=price&x=%20y", "", 200, "products /products/42?sort=price&x=%20y"},
		{"GET", "/api//products/./42/../43", "", 200, "products /products/43"},
		{"GET", "/api/%70roducts/1", "", 200, "products /products/1"},
		{"POST", "/api/auth/login", "", 200, "users /v1/auth/login"},
		{"GET", "/anything", "a.users.test", 200, "users /anything"},
		{"GET", "/health/users", "", 200, "users /health"},
		{"GET", "/teapot", "", 200, "short and stout"},
		{"GET", "/api/unknown/thing", "", 404, ""},
		{"GET", "/api/productsX", "", 404, ""},
		{"GET", "/nothing/here", "", 404, ""},
		{"DELETE", "/api/products/1", "", 405, ""},
		{"GET", "/api/auth/login", "", 405, ""},
	}
	for _, tc := range tests {
		var headers []string
		if tc.host != "" {
			headers = []string{"Host", tc.host}
		}
		r := do(t, tc.method, gw.URL+tc.path, nil, headers...)
		if r.Status != tc.status {
			t.Errorf("%s %s: status %d, want %d (%s)", tc.method, tc.path, r.Status, tc.status, r.Body)
			continue
		}
		if tc.status == 200 && r.Body != tc.body {
			t.Errorf("%s %s: body %q, want %q", tc.method, tc.path, r.Body, tc.body)
		}
		if tc.status >= 400 {
			var e struct{ Error, RequestID string }
			if err := json.Unmarshal([]byte(r.Body), &struct {
				Error     *string `json:"error"`
				RequestID *string `json:"request_id"`
			}{&e.Error, &e.RequestID}); err != nil || e.Error == "" || e.RequestID == "" {
				t.Errorf("%s %s: error body %q is not {error, request_id}", tc.method, tc.path, r.Body)
			}
			if r.Headers.Get("Content-Type") != "application/json" {
				t.Errorf("%s %s: error Content-Type %q", tc.method, tc.path, r.Headers.Get("Content-Type"))
			}
		}
		if tc.status == 405 && r.Headers.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tc.method, tc.path)
		}
	}
	r := do(t, "DELETE", gw.URL+"/api/products/1", nil)
	if got := r.Headers.Get("Allow"); got != "GET, HEAD, POST, PUT" {
		t.Errorf("Allow = %q", got)
	}
}

func TestHeadersSeenByUpstream(t *testing.T) {
	products := startUpstream(t, "products", func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Connection", "X-Upstream-Private")
		ctx.Response.Header.Set("X-Upstream-Private", "secret")
		ctx.Response.Header.Set("Keep-Alive", "timeout=5")
		ctx.Response.Header.Set("Proxy-Authenticate", "Basic")
		ctx.Response.Header.Set("X-Powered-By", "php")
		ctx.Response.Header.Set("X-Frame-Options", "DENY")
		ctx.WriteString("ok")
	})
	users := startUpstream(t, "users", nil)
	gw := startGateway(t, routingConfig(products.Addr, users.Addr))

	raw := "GET /api/products/1 HTTP/1.1\r\nHost: shop.test\r\n" +
		"Connection: keep-alive, X-Secret\r\nX-Secret: hop\r\nKeep-Alive: timeout=3\r\n" +
		"Proxy-Authorization: Basic eA==\r\nProxy: http://evil:3128\r\nTE: trailers\r\nUpgrade: h2c\r\n" +
		"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Host: evil.test\r\n" +
		"X-Forwarded-Proto: https\r\nX-Forwarded-Prefix: /evil\r\nForwarded: for=6.6.6.6\r\n" +
		"X-Drop-Me: 1\r\nX-Env: client\r\nX-Env: client2\r\nX-Request-ID: client-id-123\r\n\r\n"
	resp := rawRequest(t, gw.Addr, raw)
	expectStatus(t, resp, 200)
	seen := products.last(t)
	for _, h := range []string{"X-Secret", "Keep-Alive", "Proxy-Authorization", "Proxy", "Te", "Upgrade", "Connection",
		"X-Drop-Me"} {
		if v, ok := seen.Headers[h]; ok {
			t.Errorf("upstream received %s: %q", h, v)
		}
	}
	want := map[string][]string{
		"X-Forwarded-For":    {"127.0.0.1"},
		"X-Real-Ip":          {"127.0.0.1"},
		"X-Forwarded-Host":   {"shop.test"},
		"X-Forwarded-Proto":  {"http"},
		"Forwarded":          {"for=127.0.0.1;proto=http"}, // the client's for=6.6.6.6 is gone
		"X-Env":              {"test"},
		"X-Request-Id":       {"client-id-123"},
		"X-Forwarded-Prefix": {"/api"}, // what strip_prefix removed; the client's /evil is gone
	}
	for h, v := range want {
		if got := seen.Headers[h]; strings.Join(got, "|") != strings.Join(v, "|") {
			t.Errorf("upstream %s = %q, want %q", h, got, v)
		}
	}
	if seen.Host != "shop.test" {
		t.Errorf("upstream Host = %q", seen.Host)
	}
	// On the way back: hop-by-hop stripped, route and security headers applied, id echoed.
	for _, h := range []string{"X-Upstream-Private", "Keep-Alive", "Proxy-Authenticate", "X-Powered-By"} {
		if v := resp.Headers.Get(h); v != "" {
			t.Errorf("client received %s: %q", h, v)
		}
	}
	checks := map[string]string{
		"X-Request-Id":              "client-id-123",
		"Strict-Transport-Security": "max-age=31536000",
		"X-Frame-Options":           "DENY", // the upstream's own value wins over the default
		"X-Content-Type-Options":    "nosniff",
		"Referrer-Policy":           "strict-origin-when-cross-origin",
	}
	for h, v := range checks {
		if got := resp.Headers.Get(h); got != v {
			t.Errorf("client %s = %q, want %q", h, got, v)
		}
	}
	if resp.Headers.Get("Content-Security-Policy") == "" {
		t.Error("no Content-Security-Policy on the response")
	}
	if resp.Closed {
		t.Error("a keep-alive request's connection was closed")
	}
}

func TestForwardedForFromTrustedProxy(t *testing.T) {
	products := startUpstream(t, "products", nil)
	users := startUpstream(t, "users", nil)
	cfg := strings.Replace(routingConfig(products.Addr, users.Addr), "[10.0.0.0/8]", "[127.0.0.0/8, 10.0.0.0/8]", 1)
	gw := startGateway(t, cfg)
	raw := "GET /api/products HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 1.2.3.4, 10.1.1.1\r\nX-Forwarded-For: 10.2.2.2\r\nX-Forwarded-Proto: https\r\nX-Real-IP: 9.9.9.9\r\nX-Forwarded-Prefix: /edge\r\n\r\n"
	expectStatus(t, rawRequest(t, gw.Addr, raw), 200)
	seen := products.last(t)
	if got := strings.Join(seen.Headers["X-Forwarded-Prefix"], "|"); got != "/edge/api" {
		t.Errorf("X-Forwarded-Prefix = %q, want the trusted proxy's prefix then the stripped one", got)
	}
	if got := strings.Join(seen.Headers["X-Forwarded-For"], "|"); got != "1.2.3.4, 10.1.1.1, 10.2.2.2, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if got := strings.Join(seen.Headers["X-Real-Ip"], "|"); got != "1.2.3.4" {
		t.Errorf("X-Real-IP = %q, want the rightmost untrusted address 1.2.3.4", got)
	}
	if got := strings.Join(seen.Headers["X-Forwarded-Proto"], "|"); got != "https" {
		t.Errorf("X-Forwarded-Proto from a trusted proxy = %q, want it kept", got)
	}
}

func TestGeneratedRequestIDAndHealth(t *testing.T) {
	products := startUpstream(t, "products", nil)
	gw := startGateway(t, routingConfig(products.Addr, products.Addr))
	r := get(t, gw.URL+"/api/products")
	id := r.Headers.Get("X-Request-Id")
	if len(id) != 32 || products.last(t).Headers["X-Request-Id"][0] != id {
		t.Fatalf("generated id %q not forwarded and echoed (upstream saw %q)", id, products.last(t).Headers["X-Request-Id"])
	}
	r = get(t, gw.URL+"/api/products", "X-Request-ID", "bad id with spaces")
	if got := r.Headers.Get("X-Request-Id"); got == "bad id with spaces" || len(got) != 32 {
		t.Fatalf("an invalid client id was kept: %q", got)
	}
	h := get(t, gw.URL+"/health")
	if h.Status != 200 || strings.TrimSpace(h.Body) != `{"status":"ok"}` {
		t.Fatalf("/health = %d %q", h.Status, h.Body)
	}
}

func TestClientConnectionCloseKeepsUpstreamConnection(t *testing.T) {
	products := startUpstream(t, "products", nil)
	gw := startGateway(t, routingConfig(products.Addr, products.Addr))
	for range 5 {
		r := rawRequest(t, gw.Addr, "GET /api/products HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		expectStatus(t, r, 200)
		if !r.Closed {
			t.Fatal("the client asked to close but the connection stayed open")
		}
	}
	if n := products.accepted.Load(); n != 1 {
		t.Fatalf("upstream accepted %d connections for 5 requests with Connection: close, want 1", n)
	}
	if v := products.last(t).Headers["Connection"]; len(v) > 0 {
		t.Fatalf("upstream received Connection: %q", v)
	}
}

// TestBadRequestsAreRefusedAndClosed sends every malformed input the edge must refuse and
// checks the status, the JSON body and that the connection is closed afterwards.
func TestBadRequestsAreRefusedAndClosed(t *testing.T) {
	products := startUpstream(t, "products", nil)
	gw := startGateway(t, routingConfig(products.Addr, products.Addr))
	big := strings.Repeat("a", 20<<10)
	tests := []struct {
		name, raw string
		status    int
	}{
		{"header over max_header_bytes", "GET /api/products HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n", 431},
		{"content-length with transfer-encoding", "POST /api/products HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"invalid content-length", "POST /api/products HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello", 400},
		{"duplicate content-length", "POST /api/products HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400},
		{"transfer-encoding identity", "POST /api/products HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", 400},
		{"transfer-encoding gzip", "POST /api/products HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
		{"underscore in header name", "GET /api/products HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 1.1.1.1\r\n\r\n", 400},
		{"absolute-form target", "GET http://internal.example/api/products HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"userinfo in host", "GET /api/products HTTP/1.1\r\nHost: admin:pw@x\r\n\r\n", 400},
		{"obsolete line folding", "GET /api/products HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  2\r\n\r\n", 400},
		{"bad percent-encoding", "GET /api/products/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"encoded NUL", "GET /api/products/%00 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"raw byte over 0x7F", "GET /api/products/caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"not a method token", "BR(W /api/products HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		// A client uploading a declared 60 MB body gets 413 after at most the first 8 KiB.
		{"body over max_body_bytes declared", "POST /api/products HTTP/1.1\r\nHost: x\r\nContent-Length: 60000000\r\n\r\n" + strings.Repeat("b", 8<<10), 413},
		// With Expect: 100-continue the body is refused before it is sent.
		{"body over max_body_bytes with expect", "POST /api/products HTTP/1.1\r\nHost: x\r\nContent-Length: 60000000\r\nExpect: 100-continue\r\n\r\n", 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rawRequest(t, gw.Addr, tc.raw)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if !strings.Contains(r.Body, `"request_id"`) {
				t.Errorf("body %q is not the JSON error", r.Body)
			}
			if !r.Closed {
				t.Error("connection left open after a refused request")
			}
		})
	}
	for _, m := range []string{"TRACE", "CONNECT"} {
		r := rawRequest(t, gw.Addr, m+" /api/products HTTP/1.1\r\nHost: x\r\n\r\n")
		if r.Status != 405 || r.Headers.Get("Allow") == "" {
			t.Errorf("%s: status %d Allow %q, want 405 with Allow", m, r.Status, r.Headers.Get("Allow"))
		}
	}
	if products.count() != 0 {
		t.Fatalf("the upstream received %d refused requests", products.count())
	}
}

func TestEncodedSlashPolicy(t *testing.T) {
	products := startUpstream(t, "products", nil)
	keep := startGateway(t, routingConfig(products.Addr, products.Addr))
	r := get(t, keep.URL+"/api/products/a%2fb")
	if r.Status != 200 || r.Body != "products /products/a%2Fb" {
		t.Fatalf("keep: %d %q, want the %%2F kept encoded", r.Status, r.Body)
	}
	reject := startGateway(t, strings.Replace(routingConfig(products.Addr, products.Addr), "server:\n", "server:\n  encoded_slashes: reject\n", 1))
	if r := get(t, reject.URL+"/api/products/a%2Fb"); r.Status != 400 {
		t.Fatalf("reject: status %d, want 400", r.Status)
	}
	_ = http.StatusOK
}
