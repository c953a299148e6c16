package server_test

import (
	"fmt"
	"testing"

	"github.com/archway-gateway/archway/gateway/auth/authtest"
	"github.com/valyala/fasthttp"
)

// TestPolicyOrderAuthBeforeCacheAndLimit wires every policy as gateway/main.go does (cors → auth
// → compression → rate limit → cache) on one route and checks the order from outside: a cached
// response never reaches a request that authentication refuses, and a rate limit keyed by
// jwt:sub counts per verified subject, after authentication, so refused requests spend nothing.
func TestPolicyOrderAuthBeforeCacheAndLimit(t *testing.T) {
	key := authtest.NewKey(t)
	jwks := authtest.NewJWKSServer(t, key.JWK())
	up := startUpstream(t, "orders", func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "public, max-age=60")
		fmt.Fprintf(ctx, "orders for %s", ctx.Request.Header.Peek("X-User-Id"))
	})
	_, edgeOpt := withPolicies(t)
	gw := startGateway(t, fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
jwt: {jwks_url: "%s", issuer: archway-users, audience: archway, algorithms: [EdDSA], leeway: 30s}
upstreams:
  orders: {targets: ["%s"]}
routes:
  - name: orders
    match: {path_prefix: /orders}
    upstream: orders
    auth: {jwt: required, forward_claims: {sub: X-User-Id}}
    rate_limit: {rate: 1/m, burst: 2, key: "jwt:sub"}
    cache: {ttl: 60s, authorized: true}
`, jwks.URL(), up.Addr), edgeOpt)

	ana := bearer(key.Token(t, authtest.Claims("42")))
	bob := bearer(key.Token(t, authtest.Claims("43")))

	r := get(t, gw.URL+"/orders", ana...)
	if r.Status != 200 || r.Body != "orders for 42" {
		t.Fatalf("first request: %d %q", r.Status, r.Body)
	}
	// The response is stored now: a second request with the same token is a hit.
	if r := get(t, gw.URL+"/orders", ana...); r.Status != 200 || up.count() != 1 {
		t.Fatalf("second request: %d, upstream saw %d requests; want a cache hit", r.Status, up.count())
	}
	// Refused by auth, never served the stored response, and no bucket spent.
	for name, headers := range map[string][]string{
		"no token":      nil,
		"invalid token": bearer(authtest.NewKey(t).Token(t, authtest.Claims("42"))),
		"expired token": bearer(key.Token(t, func() map[string]any {
			c := authtest.Claims("42")
			c["exp"] = 1
			return c
		}())),
	} {
		for range 3 {
			if r := get(t, gw.URL+"/orders", headers...); r.Status != 401 {
				t.Fatalf("%s: %d %q, want 401 and never the cached response", name, r.Status, r.Body)
			}
		}
	}
	// ana's bucket (burst 2) is spent by her two requests, hit or not; bob has his own.
	if r := get(t, gw.URL+"/orders", ana...); r.Status != 429 {
		t.Fatalf("ana's third request: %d, want 429 from the jwt:sub bucket", r.Status)
	}
	if r := get(t, gw.URL+"/orders", bob...); r.Status != 200 {
		t.Fatalf("bob, same client address, other subject: %d %q, want 200", r.Status, r.Body)
	}
}
