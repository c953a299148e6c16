package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/auth/authtest"
	"github.com/archway-gateway/archway/gateway/config"
)

func jwtConfig(jwks, upstream, extra string) string {
	return fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
jwt: {jwks_url: "%s", issuer: archway-users, audience: archway, algorithms: [EdDSA], leeway: 30s %s}
upstreams:
  orders: {targets: ["%s"]}
routes:
  - name: orders
    match: {path_prefix: /api/orders}
    strip_prefix: /api
    upstream: orders
    auth: {jwt: required, forward_claims: {sub: X-User-Id, email: X-User-Email, role: X-User-Role}}
  - name: products
    match: {path_prefix: /api/products}
    strip_prefix: /api
    upstream: orders
    auth: {jwt: optional, forward_claims: {sub: X-User-Id, role: X-User-Role}}
`, jwks, extra, upstream)
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

func expectInvalidToken(t *testing.T, r response, wantChallenge string) {
	t.Helper()
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401; body %s", r.Status, r.Body)
	}
	if got := r.Headers.Get("WWW-Authenticate"); got != wantChallenge {
		t.Fatalf("WWW-Authenticate %q, want %q", got, wantChallenge)
	}
	var body struct {
		Error     string `json:"error"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal([]byte(r.Body), &body); err != nil || body.Error == "" || body.RequestID == "" {
		t.Fatalf("error body %q", r.Body)
	}
}

// TestJWTRejections: every way a token can be unacceptable is a 401 with the Bearer challenge,
// and the upstream never sees the request.
func TestJWTRejections(t *testing.T) {
	key := authtest.NewKey(t)
	jwks := authtest.NewJWKSServer(t, key.JWK())
	up := startUpstream(t, "orders", nil)
	_, opt := withPolicies(t)
	gw := startGateway(t, jwtConfig(jwks.URL(), up.Addr, ""), opt)

	now := time.Now().Unix()
	claims := func(k string, v any) map[string]any {
		c := authtest.Claims("42")
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	hdr := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": key.Kid}
	ec := authtest.NewECKey(t, key.Kid)
	cases := []struct {
		name    string
		headers []string
		reason  string // in the error message
	}{
		{"alg none", bearer(authtest.Sign(t, map[string]any{"alg": "none", "kid": key.Kid}, authtest.Claims("42"), func([]byte) []byte { return nil })), `never accepted`},
		{"HMAC signed with the public key", bearer(authtest.Sign(t, map[string]any{"alg": "HS256", "kid": key.Kid}, authtest.Claims("42"), authtest.HMACSigner(key.Public))), "algorithm not allowed"},
		{"algorithm not listed", bearer(authtest.Sign(t, map[string]any{"alg": "ES256", "kid": key.Kid}, authtest.Claims("42"), ec.Signer())), "algorithm not allowed"},
		{"wrong issuer", bearer(key.Token(t, claims("iss", "mallory"))), "wrong issuer"},
		{"wrong audience", bearer(key.Token(t, claims("aud", "elsewhere"))), "wrong audience"},
		{"expired", bearer(key.Token(t, claims("exp", now-120))), "expired"},
		{"not yet valid", bearer(key.Token(t, claims("nbf", now+120))), "not yet valid"},
		{"no exp", bearer(key.Token(t, claims("exp", nil))), "no exp"},
		{"signed by another key", bearer(authtest.Sign(t, hdr, authtest.Claims("42"), authtest.NewKey(t).Signer())), "signature"},
		{"jku pointing at the attacker's keys", bearer(authtest.Sign(t, map[string]any{"alg": "EdDSA", "kid": "evil", "jku": jwks.URL()}, authtest.Claims("42"), authtest.NewKey(t).Signer())), "unknown kid"},
		{"garbage", []string{"Authorization", "Bearer not.a.token"}, "malformed"},
		{"two Authorization headers", append(bearer(key.Token(t, authtest.Claims("42"))), bearer(key.Token(t, authtest.Claims("43")))...), "more than one"},
		{"Authorization over 8 KiB", bearer(key.Token(t, claims("pad", strings.Repeat("x", 8<<10)))), "8 KiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := up.count()
			r := get(t, gw.URL+"/api/orders", tc.headers...)
			expectInvalidToken(t, r, `Bearer error="invalid_token"`)
			if !strings.Contains(r.Body, tc.reason) {
				t.Fatalf("refused for another reason than %q: %s", tc.reason, r.Body)
			}
			if up.count() != before {
				t.Fatal("the upstream received a request with an invalid token")
			}
		})
	}
	t.Run("no token", func(t *testing.T) {
		expectInvalidToken(t, get(t, gw.URL+"/api/orders"), "Bearer")
		expectInvalidToken(t, get(t, gw.URL+"/api/orders", "Authorization", "Basic YTpi"), "Bearer")
	})
	// A header block over 8 KiB of token but under server.max_header_bytes, sent raw.
	t.Run("Authorization over 8 KiB raw", func(t *testing.T) {
		r := rawRequest(t, gw.Addr, "GET /api/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+strings.Repeat("a", 9000)+"\r\n\r\n")
		if r.Status != 401 || r.Headers.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Fatalf("status %d, challenge %q", r.Status, r.Headers.Get("WWW-Authenticate"))
		}
	})
	if jwks.Hits() != 1 {
		t.Errorf("%d JWKS fetches, want 1 (unknown kids within jwks_min_refresh fetch nothing)", jwks.Hits())
	}
}

// TestJWTForwardsClaims: a valid token reaches the upstream with its claims in the configured
// headers, and identity headers the client wrote (in any case, repeated) are gone first.
func TestJWTForwardsClaims(t *testing.T) {
	key := authtest.NewKey(t)
	jwks := authtest.NewJWKSServer(t, key.JWK())
	up := startUpstream(t, "orders", nil)
	_, opt := withPolicies(t)
	gw := startGateway(t, jwtConfig(jwks.URL(), up.Addr, ""), opt)

	claims := authtest.Claims("42")
	claims["role"] = "customer"
	token := key.Token(t, claims)
	r := get(t, gw.URL+"/api/orders/7", append(bearer(token),
		"X-User-Id", "1", "x-user-id", "2", "X-User-Role", "admin", "X-USER-EMAIL", "root@example.com")...)
	expectStatus(t, r, 200)
	seen := up.last(t)
	for h, want := range map[string]string{"X-User-Id": "42", "X-User-Email": "ana@example.com", "X-User-Role": "customer"} {
		if got := seen.Headers[h]; len(got) != 1 || got[0] != want {
			t.Errorf("upstream saw %s = %q, want exactly %q", h, got, want)
		}
	}
	if got := seen.Headers["Authorization"]; len(got) != 1 || got[0] != "Bearer "+token {
		t.Errorf("Authorization not forwarded as sent: %q", got)
	}
	// A token without a claim: its header is absent, never the client's copy.
	noEmail := authtest.Claims("43")
	delete(noEmail, "email")
	expectStatus(t, get(t, gw.URL+"/api/orders", append(bearer(key.Token(t, noEmail)), "X-User-Email", "forged@example.com")...), 200)
	if got, ok := up.last(t).Headers["X-User-Email"]; ok {
		t.Errorf("X-User-Email = %q for a token without email", got)
	}
	// A claim that would break the header apart refuses the token.
	evil := authtest.Claims("44")
	evil["email"] = "a@b.c\r\nX-User-Role: admin"
	expectInvalidToken(t, get(t, gw.URL+"/api/orders", bearer(key.Token(t, evil))...), `Bearer error="invalid_token"`)
}

// TestJWTOptional: anonymous requests pass with the identity headers removed; a valid token
// forwards claims; an invalid one is still refused.
func TestJWTOptional(t *testing.T) {
	key := authtest.NewKey(t)
	jwks := authtest.NewJWKSServer(t, key.JWK())
	up := startUpstream(t, "products", nil)
	_, opt := withPolicies(t)
	gw := startGateway(t, jwtConfig(jwks.URL(), up.Addr, ""), opt)

	expectStatus(t, get(t, gw.URL+"/api/products", "X-User-Id", "1", "X-User-Role", "admin"), 200)
	seen := up.last(t)
	if _, ok := seen.Headers["X-User-Id"]; ok {
		t.Errorf("anonymous request forwarded X-User-Id %q", seen.Headers["X-User-Id"])
	}
	if _, ok := seen.Headers["X-User-Role"]; ok {
		t.Error("anonymous request forwarded the client's X-User-Role")
	}
	expectStatus(t, get(t, gw.URL+"/api/products", append(bearer(key.Token(t, authtest.Claims("9"))), "X-User-Id", "1")...), 200)
	if got := up.last(t).Headers["X-User-Id"]; len(got) != 1 || got[0] != "9" {
		t.Errorf("X-User-Id = %q, want [9]", got)
	}
	expired := authtest.Claims("9")
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	expectInvalidToken(t, get(t, gw.URL+"/api/products", bearer(key.Token(t, expired))...), `Bearer error="invalid_token"`)
}

// TestJWKSRefreshAndFailure: a key the issuer adds is picked up by the first token naming it
// once jwks_min_refresh has passed, with one fetch however many such tokens arrive; while the
// endpoint fails, the last good keys keep verifying.
func TestJWKSRefreshAndFailure(t *testing.T) {
	oldKey, newKey := authtest.NewKey(t), authtest.NewKey(t)
	jwks := authtest.NewJWKSServer(t, oldKey.JWK())
	up := startUpstream(t, "orders", nil)
	_, opt := withPolicies(t)
	gw := startGateway(t, jwtConfig(jwks.URL(), up.Addr, ", jwks_min_refresh: 1s, jwks_refresh: 10m"), opt)

	expectStatus(t, get(t, gw.URL+"/api/orders", bearer(oldKey.Token(t, authtest.Claims("1")))...), 200)
	jwks.SetKeys(oldKey.JWK(), newKey.JWK())
	fresh := newKey.Token(t, authtest.Claims("2"))
	// Right after the first fetch the new kid is unknown, and a flood of unknown kids is free.
	for range 20 {
		expectInvalidToken(t, get(t, gw.URL+"/api/orders", bearer(authtest.NewKey(t).Token(t, authtest.Claims("x")))...), `Bearer error="invalid_token"`)
	}
	if jwks.Hits() != 1 {
		t.Fatalf("%d fetches, want 1", jwks.Hits())
	}
	time.Sleep(time.Second)
	var wg sync.WaitGroup
	statuses := make(chan int, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- get(t, gw.URL+"/api/orders", bearer(fresh)...).Status
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 200 {
			t.Fatalf("token with the new kid: status %d after jwks_min_refresh", s)
		}
	}
	if jwks.Hits() != 2 {
		t.Fatalf("%d fetches, want 2", jwks.Hits())
	}

	jwks.Fail(true)
	time.Sleep(1100 * time.Millisecond)
	// An unknown kid now triggers a fetch that fails; the cached keys stay.
	expectInvalidToken(t, get(t, gw.URL+"/api/orders", bearer(authtest.NewKey(t).Token(t, authtest.Claims("x")))...), `Bearer error="invalid_token"`)
	if jwks.Hits() != 3 {
		t.Fatalf("%d fetches, want 3", jwks.Hits())
	}
	expectStatus(t, get(t, gw.URL+"/api/orders", bearer(oldKey.Token(t, authtest.Claims("1")))...), 200)
	expectStatus(t, get(t, gw.URL+"/api/orders", bearer(fresh)...), 200)
}

// TestJWKSUnavailableIs503: with no keys ever fetched, a token cannot be checked: 503, not 401
// (the client's token may be fine).
func TestJWKSUnavailableIs503(t *testing.T) {
	key := authtest.NewKey(t)
	jwks := authtest.NewJWKSServer(t, key.JWK())
	jwks.Fail(true)
	up := startUpstream(t, "orders", nil)
	_, opt := withPolicies(t)
	gw := startGateway(t, jwtConfig(jwks.URL(), up.Addr, ", jwks_timeout: 300ms"), opt)
	r := get(t, gw.URL+"/api/orders", bearer(key.Token(t, authtest.Claims("1")))...)
	expectStatus(t, r, 503)
	if r.Headers.Get("WWW-Authenticate") != "" {
		t.Error("a 503 carries a Bearer challenge")
	}
	jwks.Fail(false)
	deadline := time.Now().Add(10 * time.Second)
	for get(t, gw.URL+"/api/orders", bearer(key.Token(t, authtest.Claims("1")))...).Status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("keys never fetched after the endpoint recovered")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestJWTReloadKeepsKeys: a reload that keeps the jwt section keeps the key cache (no new
// fetch), and tokens keep verifying across it.
func TestJWTReloadKeepsKeys(t *testing.T) {
	key := authtest.NewKey(t)
	jwks := authtest.NewJWKSServer(t, key.JWK())
	up := startUpstream(t, "orders", nil)
	e, opt := withPolicies(t)
	yaml := jwtConfig(jwks.URL(), up.Addr, "")
	gw := startGateway(t, yaml, opt)
	token := key.Token(t, authtest.Claims("1"))
	expectStatus(t, get(t, gw.URL+"/api/orders", bearer(token)...), 200)
	ks := e.Tokens.KeySet(jwks.URL())

	changed := strings.Replace(yaml, "strip_prefix: /api\n    upstream: orders\n    auth: {jwt: optional", "strip_prefix: /api\n    upstream: orders\n    timeout: 5s\n    auth: {jwt: optional", 1)
	for _, y := range []string{yaml, changed} {
		cfg, err := config.Parse([]byte(y), "reload.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gw.Apply(cfg, "test"); err != nil {
			t.Fatal(err)
		}
		expectStatus(t, get(t, gw.URL+"/api/orders", bearer(token)...), 200)
	}
	if e.Tokens.KeySet(jwks.URL()) != ks || jwks.Hits() != 1 {
		t.Fatalf("reloads replaced the key cache (%d fetches)", jwks.Hits())
	}
	// Removing jwt altogether stops the fetcher once the configuration is live.
	noAuth := fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
upstreams: {orders: {targets: ["%s"]}}
routes: [{name: orders, match: {path_prefix: /api/orders}, upstream: orders}]
`, up.Addr)
	cfg := mustParse(t, noAuth)
	if err := gw.Check(cfg); err != nil {
		t.Fatal(err)
	}
	if e.Tokens.KeySet(jwks.URL()) == nil {
		t.Fatal("a dry run stopped the live key cache")
	}
	if _, err := gw.Apply(cfg, "test"); err != nil {
		t.Fatal(err)
	}
	if e.Tokens.KeySet(jwks.URL()) != nil {
		t.Fatal("the key cache outlived the jwt section")
	}
}
