package auth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/auth/authtest"
	"github.com/archway-gateway/archway/gateway/config"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestUnknownKidRefreshIsRateLimited: a key the issuer adds is picked up by the first token
// that names it once MinRefresh has passed, and a flood of tokens with unknown kids makes at
// most one fetch per MinRefresh.
func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	oldKey, newKey := authtest.NewKey(t), authtest.NewKey(t)
	const minRefresh = 400 * time.Millisecond
	v, ks, srv := newJWKSVerifier(t, []string{"EdDSA"}, KeySetOptions{MinRefresh: minRefresh, Logger: quiet}, oldKey.JWK())
	if srv.Hits() != 1 {
		t.Fatalf("%d fetches at start, want 1", srv.Hits())
	}
	srv.SetKeys(oldKey.JWK(), newKey.JWK()) // the issuer rotates
	fresh := newKey.Token(t, authtest.Claims("1"))

	// Within MinRefresh of the first fetch the new kid is unknown, and asking costs nothing.
	start := time.Now()
	if err := verify(v, fresh); !errors.Is(err, ErrUnknownKid) {
		t.Fatalf("new kid before MinRefresh: %v", err)
	}
	// A fetch on loopback is fast too, so Hits below is what proves none was made; the time only
	// catches a wait for the refresh (MinRefresh, 400ms).
	if waited := time.Since(start); waited >= minRefresh {
		t.Fatalf("a rate-limited unknown kid waited %s", waited)
	}
	if srv.Hits() != 1 {
		t.Fatalf("%d fetches, want 1", srv.Hits())
	}

	time.Sleep(minRefresh)
	// Many requests at once with the new kid and with made-up ones: one fetch serves them.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				errs <- verify(v, fresh)
			} else {
				_ = verify(v, authtest.NewKey(t).Token(t, authtest.Claims("1")))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("the rotated key did not verify after a refresh: %v", err)
		}
	}
	if got := srv.Hits(); got != 2 {
		t.Fatalf("%d fetches after a flood of unknown kids, want 2", got)
	}
	// Made-up kids keep arriving: still no fetch until MinRefresh has passed again.
	for range 20 {
		_ = verify(v, authtest.NewKey(t).Token(t, authtest.Claims("1")))
	}
	if got := srv.Hits(); got != 2 {
		t.Fatalf("%d fetches, want 2 (rate limit)", got)
	}
	if got := ks.Fetches(); got != 2 {
		t.Fatalf("KeySet counted %d fetches", got)
	}
}

// TestLastGoodKeysKeptWhenJWKSFails: while the endpoint answers 500 (background refreshes and
// unknown-kid refreshes both fail), tokens signed with the cached keys keep verifying.
func TestLastGoodKeysKeptWhenJWKSFails(t *testing.T) {
	key := authtest.NewKey(t)
	v, ks, srv := newJWKSVerifier(t, []string{"EdDSA"},
		KeySetOptions{Refresh: 20 * time.Millisecond, MinRefresh: 20 * time.Millisecond, Logger: quiet}, key.JWK())
	srv.Fail(true)
	before := srv.Hits()
	waitFor(t, "background refreshes against the failing endpoint", func() bool { return srv.Hits() >= before+3 })
	if err := verify(v, key.Token(t, authtest.Claims("1"))); err != nil {
		t.Fatalf("cached key no longer verifies while the JWKS endpoint fails: %v", err)
	}
	time.Sleep(30 * time.Millisecond)
	if err := verify(v, authtest.NewKey(t).Token(t, authtest.Claims("1"))); !errors.Is(err, ErrUnknownKid) {
		t.Fatalf("unknown kid with a failing endpoint: %v", err)
	}
	if !ks.HasKeys() {
		t.Fatal("a failed fetch dropped the keys")
	}
	srv.Fail(false)
	if err := verify(v, key.Token(t, authtest.Claims("1"))); err != nil {
		t.Fatal(err)
	}
}

// TestNoKeysYetIs503: before any fetch has succeeded no token can be checked; that is the
// gateway's problem, not the client's, so the answer is 503 rather than 401. Once the endpoint
// comes up, the retry (every RetryWithoutKeys) picks the keys up.
func TestNoKeysYetIs503(t *testing.T) {
	key := authtest.NewKey(t)
	srv := authtest.NewJWKSServer(t, key.JWK())
	srv.Fail(true)
	ks := NewKeySet(context.Background(), srv.URL(), KeySetOptions{Refresh: time.Hour, MinRefresh: 30 * time.Second,
		Timeout: 200 * time.Millisecond, RetryWithoutKeys: 50 * time.Millisecond, Logger: quiet})
	defer ks.Stop()
	v, err := NewVerifier(VerifierConfig{Keys: ks, Algorithms: []string{"EdDSA"}})
	if err != nil {
		t.Fatal(err)
	}
	token := key.Token(t, authtest.Claims("1"))
	err = verify(v, token)
	if !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("no keys: %v", err)
	}
	if code, _ := err.(*Error).Status(); code != 503 {
		t.Fatalf("status %d", code)
	}
	srv.Fail(false)
	waitFor(t, "keys after the endpoint recovers", ks.HasKeys)
	if err := verify(v, token); err != nil {
		t.Fatal(err)
	}
}

// TestKeySetStops: the fetcher goroutine ends with its context, and Stop waits for it.
func TestKeySetStops(t *testing.T) {
	srv := authtest.NewJWKSServer(t, authtest.NewKey(t).JWK())
	ctx, cancel := context.WithCancel(context.Background())
	ks := NewKeySet(ctx, srv.URL(), KeySetOptions{Refresh: 5 * time.Millisecond, MinRefresh: time.Second, Timeout: time.Second, Logger: quiet})
	waitFor(t, "a few refreshes", func() bool { return srv.Hits() >= 3 })
	cancel()
	select {
	case <-ks.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the fetcher goroutine did not stop on ctx.Done")
	}
	hits := srv.Hits()
	time.Sleep(30 * time.Millisecond)
	if srv.Hits() != hits {
		t.Fatal("fetches after the context ended")
	}
	ks.Stop() // idempotent after the context ended
}

// TestRegistryKeepsKeysAcrossReloads: a configuration that keeps the jwt section keeps the
// verifier and its key cache (no new fetch); one that changes the JWKS URL stops the old
// fetcher when it goes live, and not before.
func TestRegistryKeepsKeysAcrossReloads(t *testing.T) {
	key := authtest.NewKey(t)
	srvA := authtest.NewJWKSServer(t, key.JWK())
	srvB := authtest.NewJWKSServer(t, key.JWK())
	m := NewRegistry(context.Background(), quiet, nil)
	defer m.Close()
	cfgFor := func(url, issuer string) *config.Config {
		cfg, err := config.Parse([]byte(`
jwt: {jwks_url: "`+url+`", issuer: `+issuer+`, audience: archway}
upstreams: {u: {targets: ["127.0.0.1:1"]}}
routes:
  - {name: a, match: {path_prefix: /a}, upstream: u, auth: {jwt: required, forward_claims: {sub: X-User-Id}}}
  - {name: b, match: {path_prefix: /b}, upstream: u, auth: {jwt: optional}}
`), "test.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	build := func(cfg *config.Config) {
		for _, r := range cfg.Routes {
			if mw, err := m.Middleware(r, cfg); err != nil || mw == nil {
				t.Fatalf("route %s: %v", r.Name, err)
			}
		}
	}
	first := cfgFor(srvA.URL(), "archway-users")
	build(first)
	m.Commit(first)
	ksA := m.KeySet(srvA.URL())
	waitFor(t, "first fetch", ksA.HasKeys)
	vA := m.verifiers[jwtKey(first.JWT)]

	same := cfgFor(srvA.URL(), "archway-users")
	build(same)
	m.Commit(same)
	if m.KeySet(srvA.URL()) != ksA || m.verifiers[jwtKey(same.JWT)] != vA {
		t.Fatal("a reload with the same jwt section replaced the verifier or its keys")
	}
	otherIssuer := cfgFor(srvA.URL(), "someone-else")
	build(otherIssuer)
	m.Commit(otherIssuer)
	if m.KeySet(srvA.URL()) != ksA {
		t.Fatal("changing the issuer dropped the fetched keys")
	}
	if srvA.Hits() != 1 {
		t.Fatalf("%d fetches across reloads, want 1", srvA.Hits())
	}

	moved := cfgFor(srvB.URL(), "archway-users")
	build(moved) // a build alone (a dry run, or a reload that fails later) stops nothing
	if m.KeySet(srvA.URL()) == nil {
		t.Fatal("building a new configuration stopped the live key cache")
	}
	m.Commit(moved)
	if m.KeySet(srvA.URL()) != nil {
		t.Fatal("the old key cache outlived the commit")
	}
	select {
	case <-ksA.exited:
	default:
		t.Fatal("the old fetcher goroutine is still running")
	}
	ksB := m.KeySet(srvB.URL())
	if ksB == nil {
		t.Fatal("no key cache for the new URL")
	}
	m.Close()
	select {
	case <-ksB.exited:
	default:
		t.Fatal("Close left a fetcher running")
	}
}

func TestParseJWKS(t *testing.T) {
	ed := authtest.NewKey(t)
	ec := authtest.NewECKey(t, "ec")
	rs := authtest.NewRSAKey(t, "rs")
	encSet := func(keys ...map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"keys": keys})
		return b
	}
	with := func(k map[string]any, kv ...any) map[string]any {
		c := map[string]any{}
		for key, val := range k {
			c[key] = val
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		return c
	}
	keys, skipped, err := parseJWKS(encSet(ed.JWK(), ec.JWK(), rs.JWK(),
		with(ed.JWK(), "kid", "enc-key", "use", "enc"),
		with(ed.JWK(), "kid", nil),
		with(ed.JWK(), "kid", "wrong-alg", "alg", "RS256"),
		with(ed.JWK(), "kid", "short", "x", "AAAA"),
		map[string]any{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
		with(ec.JWK(), "kid", "p384", "crv", "P-384"),
	))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || keys[ed.Kid].alg != algEdDSA || keys["ec"].alg != algES256 || keys["rs"].alg != algRS256 {
		t.Fatalf("keys = %v", keys)
	}
	if len(skipped) != 6 {
		t.Fatalf("skipped = %q", skipped)
	}
	// Two keys under one kid: neither is trusted.
	other := authtest.NewKey(t)
	keys, _, err = parseJWKS(encSet(ed.JWK(), with(other.JWK(), "kid", ed.Kid), ec.JWK()))
	if err != nil || len(keys) != 1 {
		t.Fatalf("duplicate kid: %v %v", keys, err)
	}
	for _, bad := range []string{`{}`, `{"keys":[]}`, `not json`, string(encSet(map[string]any{"kty": "oct"}))} {
		if _, _, err := parseJWKS([]byte(bad)); err == nil {
			t.Errorf("parseJWKS(%s) accepted", bad)
		}
	}
}
