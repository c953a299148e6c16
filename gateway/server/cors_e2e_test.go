package server_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/gateway/auth/authtest"
	"github.com/valyala/fasthttp"
)

func corsConfig(jwks, upstream string) string {
	return fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
jwt: {jwks_url: "%s", issuer: archway-users, audience: archway}
upstreams:
  orders: {targets: ["%s"]}
routes:
  - name: orders
    match: {path_prefix: /api/orders, methods: [GET, POST]}
    strip_prefix: /api
    upstream: orders
    auth: {jwt: required}
    cors:
      origins: ["https://shop.example.com", "https://*.preview.example.com"]
      methods: [GET, POST]
      headers: [Authorization, Content-Type]
      expose_headers: [X-Request-Id]
      credentials: true
      max_age: 1h
  - name: public
    match: {path_prefix: /api/products}
    upstream: orders
    cors: {origins: ["*"], max_age: 0s}
`, jwks, upstream)
}

func preflight(t *testing.T, url, origin, method, headers string) response {
	t.Helper()
	h := []string{"Origin", origin, "Access-Control-Request-Method", method}
	if headers != "" {
		h = append(h, "Access-Control-Request-Headers", headers)
	}
	return do(t, http.MethodOptions, url, nil, h...)
}

func varies(r response, token string) bool {
	for _, v := range r.Headers.Values("Vary") {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// TestCORSPreflight: the gateway answers preflights itself, before authentication (a preflight
// carries no token), on a route whose methods do not list OPTIONS, without the upstream.
func TestCORSPreflight(t *testing.T) {
	jwks := authtest.NewJWKSServer(t, authtest.NewKey(t).JWK())
	up := startUpstream(t, "orders", nil)
	_, opt := withPolicies(t)
	gw := startGateway(t, corsConfig(jwks.URL(), up.Addr), opt)

	r := preflight(t, gw.URL+"/api/orders/1", "https://shop.example.com", "POST", "content-type, authorization")
	expectStatus(t, r, 204)
	for h, want := range map[string]string{
		"Access-Control-Allow-Origin":      "https://shop.example.com",
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Allow-Methods":     "GET, POST",
		"Access-Control-Allow-Headers":     "content-type, authorization",
		"Access-Control-Max-Age":           "3600",
	} {
		if got := r.Headers.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	for _, v := range []string{"Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"} {
		if !varies(r, v) {
			t.Errorf("preflight does not vary on %s: %q", v, r.Headers.Values("Vary"))
		}
	}
	if r.Body != "" || r.Headers.Get("WWW-Authenticate") != "" {
		t.Errorf("preflight body %q, challenge %q", r.Body, r.Headers.Get("WWW-Authenticate"))
	}
	expectStatus(t, preflight(t, gw.URL+"/api/orders", "https://pr-7.preview.example.com", "GET", ""), 204)

	for name, tc := range map[string][3]string{
		"origin not listed":        {"https://evil.example", "GET", ""},
		"origin over http":         {"http://shop.example.com", "GET", ""},
		"wildcard needs a label":   {"https://.preview.example.com", "GET", ""},
		"lookalike suffix":         {"https://evilpreview.example.com", "GET", ""},
		"method not listed":        {"https://shop.example.com", "DELETE", ""},
		"header not listed":        {"https://shop.example.com", "POST", "content-type, x-debug"},
		"method in the wrong case": {"https://shop.example.com", "post", ""},
	} {
		r := preflight(t, gw.URL+"/api/orders", tc[0], tc[1], tc[2])
		if r.Status != 403 || r.Headers.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: status %d, Allow-Origin %q; want 403 without it", name, r.Status, r.Headers.Get("Access-Control-Allow-Origin"))
		}
	}
	if n := up.count(); n != 0 {
		t.Errorf("the upstream saw %d preflights", n)
	}
	// "*" without credentials: any origin, the literal "*", no Max-Age when max_age is 0s.
	r = preflight(t, gw.URL+"/api/products", "https://anyone.example", "PUT", "Content-Type")
	expectStatus(t, r, 204)
	if r.Headers.Get("Access-Control-Allow-Origin") != "*" || r.Headers.Get("Access-Control-Allow-Credentials") != "" ||
		r.Headers.Get("Access-Control-Max-Age") != "" || r.Headers.Get("Access-Control-Allow-Headers") != "Content-Type" {
		t.Errorf("public preflight headers %v", r.Headers)
	}
	// The default header list is Accept, Authorization, Content-Type, X-Request-Id.
	expectStatus(t, preflight(t, gw.URL+"/api/products", "https://anyone.example", "GET", "x-anything"), 403)
}

// TestCORSActualRequests: allowed origins get the headers on every answer (a 401 included, so
// the browser can read it); others get none; the upstream's own CORS headers are replaced.
func TestCORSActualRequests(t *testing.T) {
	key := authtest.NewKey(t)
	jwks := authtest.NewJWKSServer(t, key.JWK())
	up := startUpstream(t, "orders", func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Access-Control-Allow-Origin", "*")
		ctx.Response.Header.Set("Vary", "Accept-Language")
		ctx.SetBodyString("ok")
	})
	_, opt := withPolicies(t)
	gw := startGateway(t, corsConfig(jwks.URL(), up.Addr), opt)
	token := key.Token(t, authtest.Claims("1"))

	r := get(t, gw.URL+"/api/orders", "Origin", "https://shop.example.com", "Authorization", "Bearer "+token)
	expectStatus(t, r, 200)
	if got := r.Headers.Values("Access-Control-Allow-Origin"); !slices.Equal(got, []string{"https://shop.example.com"}) {
		t.Errorf("Access-Control-Allow-Origin %q", got)
	}
	if r.Headers.Get("Access-Control-Allow-Credentials") != "true" || r.Headers.Get("Access-Control-Expose-Headers") != "X-Request-Id" {
		t.Errorf("headers %v", r.Headers)
	}
	if !varies(r, "Origin") || !varies(r, "Accept-Language") {
		t.Errorf("Vary %q, want the upstream's and Origin", r.Headers.Values("Vary"))
	}

	r = get(t, gw.URL+"/api/orders", "Origin", "https://shop.example.com")
	expectStatus(t, r, 401)
	if r.Headers.Get("Access-Control-Allow-Origin") != "https://shop.example.com" {
		t.Error("a 401 to an allowed origin lacks Access-Control-Allow-Origin; the browser cannot read it")
	}

	r = get(t, gw.URL+"/api/orders", "Origin", "https://evil.example", "Authorization", "Bearer "+token)
	expectStatus(t, r, 200)
	if r.Headers.Get("Access-Control-Allow-Origin") != "" || !varies(r, "Origin") {
		t.Errorf("disallowed origin: Allow-Origin %q, Vary %q", r.Headers.Get("Access-Control-Allow-Origin"), r.Headers.Values("Vary"))
	}
	r = get(t, gw.URL+"/api/orders", "Authorization", "Bearer "+token)
	if r.Headers.Get("Access-Control-Allow-Origin") != "" || !varies(r, "Origin") {
		t.Error("a request without Origin got CORS headers or no Vary: Origin")
	}
	r = get(t, gw.URL+"/api/products", "Origin", "https://anyone.example")
	if r.Headers.Get("Access-Control-Allow-Origin") != "*" || varies(r, "Origin") {
		t.Errorf(`"*" route: Allow-Origin %q, Vary %q`, r.Headers.Get("Access-Control-Allow-Origin"), r.Headers.Values("Vary"))
	}
	// A non-preflight OPTIONS is an ordinary request.
	r = do(t, http.MethodOptions, gw.URL+"/api/products", nil, "Origin", "https://anyone.example")
	expectStatus(t, r, 200)
	if up.last(t).Method != "OPTIONS" {
		t.Error("a plain OPTIONS was not forwarded")
	}
}
