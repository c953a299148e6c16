package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/valyala/fasthttp"
	"golang.org/x/time/rate"

	"github.com/archway-gateway/archway/backends/internal/api"
	"github.com/archway-gateway/archway/backends/internal/auth"
	"github.com/archway-gateway/archway/internal/testenv"
)

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// jwksServer serves the issuer's JWKS over a real loopback socket and counts requests; fail makes
// it answer 500.
type jwksServer struct {
	*httptest.Server
	hits   atomic.Int32
	failed atomic.Int32 // answers 500 given
	fail   atomic.Bool
	mu     sync.Mutex
	set    auth.JWKSet
}

func newJWKSServer(t *testing.T, set auth.JWKSet) *jwksServer {
	s := &jwksServer{set: set}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.hits.Add(1)
		if s.fail.Load() {
			s.failed.Add(1)
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		_ = json.NewEncoder(w).Encode(s.set)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(set auth.JWKSet) {
	s.mu.Lock()
	s.set = set
	s.mu.Unlock()
}

func TestTokensVerifyThroughJWKS(t *testing.T) {
	key := newKey(t)
	issuer := auth.NewEd25519Issuer(key, auth.IssuerConfig{})
	srv := newJWKSServer(t, issuer.JWKS())
	verifier := jwksVerifier(t, srv, auth.JWKSOptions{})
	token, issued, err := issuer.Issue(42, "ana@example.com", auth.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := verifier.Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if claims.Subject != "42" || claims.Email != "ana@example.com" || !claims.IsAdmin() ||
		claims.Issuer != "archway-users" || claims.ID != issued.ID || claims.ID == "" {
		t.Fatalf("claims = %+v", claims)
	}
	if got := claims.ExpiresAt.Sub(claims.IssuedAt.Time); got != 24*time.Hour {
		t.Fatalf("lifetime = %s; want 24h", got)
	}
	header := decodeSegment(t, token, 0)
	if header["alg"] != "EdDSA" || header["kid"] != auth.Thumbprint(key.Public().(ed25519.PublicKey)) {
		t.Fatalf("header = %v", header)
	}
}

func decodeSegment(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// sign builds a token by hand, so tests can forge what no honest issuer produces.
func sign(t *testing.T, header, claims map[string]any, signer func(signingInput []byte) []byte) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return input + "." + base64.RawURLEncoding.EncodeToString(signer([]byte(input)))
}

func TestVerifierRejects(t *testing.T) {
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	kid := auth.Thumbprint(pub)
	issuer := auth.NewEd25519Issuer(key, auth.IssuerConfig{})
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Keys: issuer.Keys()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	good := func() map[string]any {
		return map[string]any{"iss": "archway-users", "aud": "archway", "sub": "7", "email": "a@b.c",
			"role": "customer", "iat": now, "exp": now + 3600, "jti": "x"}
	}
	with := func(k string, v any) map[string]any {
		c := good()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	edSign := func(k ed25519.PrivateKey) func([]byte) []byte {
		return func(in []byte) []byte { return ed25519.Sign(k, in) }
	}
	hmacSign := func(secret []byte) func([]byte) []byte {
		return func(in []byte) []byte { m := hmac.New(sha256.New, secret); m.Write(in); return m.Sum(nil) }
	}
	edHeader := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": kid}
	expiredIssuer := auth.NewEd25519Issuer(key, auth.IssuerConfig{Now: func() time.Time { return time.Now().Add(-25 * time.Hour) }})
	expired, _, _ := expiredIssuer.Issue(7, "a@b.c", auth.RoleCustomer)
	otherAud, _, _ := auth.NewEd25519Issuer(key, auth.IssuerConfig{Audience: "elsewhere"}).Issue(7, "a@b.c", auth.RoleCustomer)
	otherIss, _, _ := auth.NewEd25519Issuer(key, auth.IssuerConfig{Issuer: "mallory"}).Issue(7, "a@b.c", auth.RoleCustomer)

	for _, tc := range []struct {
		name  string
		token string
	}{
		{"expired", expired},
		{"wrong audience", otherAud},
		{"wrong issuer", otherIss},
		{"alg none", sign(t, map[string]any{"alg": "none", "typ": "JWT", "kid": kid}, good(), func([]byte) []byte { return nil })},
		{"alg none without kid", sign(t, map[string]any{"alg": "none"}, good(), func([]byte) []byte { return nil })},
		{"HS256 forged with the raw public key", sign(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid}, good(), hmacSign(pub))},
		{"HS256 forged with the JWK x", sign(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid}, good(), hmacSign([]byte(base64.RawURLEncoding.EncodeToString(pub))))},
		{"signed by another key under our kid", sign(t, edHeader, good(), edSign(newKey(t)))},
		{"unknown kid", sign(t, map[string]any{"alg": "EdDSA", "kid": "nope"}, good(), edSign(key))},
		{"no kid", sign(t, map[string]any{"alg": "EdDSA"}, good(), edSign(key))},
		{"no exp", sign(t, edHeader, with("exp", nil), edSign(key))},
		{"issued in the future", sign(t, edHeader, with("iat", now+3600), edSign(key))},
		{"not yet valid", sign(t, edHeader, with("nbf", now+3600), edSign(key))},
		{"non-numeric subject", sign(t, edHeader, with("sub", "root"), edSign(key))},
		{"no subject", sign(t, edHeader, with("sub", nil), edSign(key))},
		{"unknown role", sign(t, edHeader, with("role", "superuser"), edSign(key))},
		{"tampered claims", func() string {
			tok, _, _ := issuer.Issue(7, "a@b.c", auth.RoleCustomer)
			parts := strings.Split(tok, ".")
			c := good()
			c["role"] = "admin"
			raw, _ := json.Marshal(c)
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString(raw) + "." + parts[2]
		}()},
		{"garbage", "not.a.token"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := verifier.Verify(context.Background(), tc.token); !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("Verify = %v; want ErrInvalidToken", err)
			}
		})
	}
	// The control: the hand-built good token verifies, so the rejections above are for the
	// reason each case names.
	if _, err := verifier.Verify(context.Background(), sign(t, edHeader, good(), edSign(key))); err != nil {
		t.Fatalf("hand-built good token: %v", err)
	}
}

func TestHS256Mode(t *testing.T) {
	secret := []byte(strings.Repeat("s", 32))
	hsIssuer, err := auth.NewHS256Issuer(secret, auth.IssuerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	token, _, _ := hsIssuer.Issue(3, "x@y.z", auth.RoleCustomer)
	if _, err := verifier.Verify(context.Background(), token); err != nil {
		t.Fatalf("HS256 token: %v", err)
	}
	edToken, _, _ := auth.NewEd25519Issuer(newKey(t), auth.IssuerConfig{}).Issue(3, "x@y.z", auth.RoleCustomer)
	if _, err := verifier.Verify(context.Background(), edToken); err == nil {
		t.Fatal("an HS256 verifier accepted an EdDSA token")
	}
	wrong, _ := auth.NewHS256Issuer([]byte(strings.Repeat("t", 32)), auth.IssuerConfig{})
	wrongToken, _, _ := wrong.Issue(3, "x@y.z", auth.RoleCustomer)
	if _, err := verifier.Verify(context.Background(), wrongToken); err == nil {
		t.Fatal("accepted a token signed with another secret")
	}
	if len(hsIssuer.JWKS().Keys) != 0 {
		t.Fatal("an HS256 issuer publishes keys")
	}
	if _, err := auth.NewHS256Issuer([]byte("short"), auth.IssuerConfig{}); err == nil {
		t.Fatal("accepted a short secret")
	}
	if _, err := auth.NewVerifier(auth.VerifierConfig{Secret: secret, Keys: auth.NewEd25519Issuer(newKey(t), auth.IssuerConfig{}).Keys()}); err == nil {
		t.Fatal("accepted both a secret and keys")
	}
	if _, err := auth.NewVerifier(auth.VerifierConfig{}); err == nil {
		t.Fatal("accepted no keys at all")
	}
}

// A key published for encryption is not a signing key, even under the token's kid.
func TestJWKSRefusesEncryptionKeys(t *testing.T) {
	issuer := auth.NewEd25519Issuer(newKey(t), auth.IssuerConfig{})
	set := issuer.JWKS()
	set.Keys[0].Use = "enc"
	verifier := jwksVerifier(t, newJWKSServer(t, set), auth.JWKSOptions{})
	token, _, _ := issuer.Issue(1, "a@b.c", auth.RoleCustomer)
	if _, err := verifier.Verify(context.Background(), token); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("Verify with a use=enc key = %v; want ErrInvalidToken", err)
	}
}

// jwksVerifier verifies through a JWKS for srv whose goroutine ends with the test.
func jwksVerifier(t *testing.T, srv *jwksServer, opts auth.JWKSOptions) *auth.Verifier {
	t.Helper()
	keys, err := auth.NewJWKS(t.Context(), srv.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return verifier
}

// The rate limit on unknown-kid fetches is keyfunc's own limiter, configured here: one token,
// refilled once an hour, so nothing refills it during the test unless the test says so.
func TestJWKSRefreshesOnUnknownKidWithinTheRateLimit(t *testing.T) {
	oldIssuer := auth.NewEd25519Issuer(newKey(t), auth.IssuerConfig{})
	midIssuer := auth.NewEd25519Issuer(newKey(t), auth.IssuerConfig{})
	newIssuer := auth.NewEd25519Issuer(newKey(t), auth.IssuerConfig{})
	srv := newJWKSServer(t, oldIssuer.JWKS())
	limiter := rate.NewLimiter(rate.Every(time.Hour), 1)
	verifier := jwksVerifier(t, srv, auth.JWKSOptions{RefreshUnknownKID: limiter})
	ctx := context.Background()
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("fetches after start = %d; want 1", got)
	}

	oldToken, _, _ := oldIssuer.Issue(1, "a@b.c", auth.RoleCustomer)
	for range 5 {
		if _, err := verifier.Verify(ctx, oldToken); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("fetches after 5 verifications = %d; want 1 (cached)", got)
	}

	// The users service rotates its key: the first token with the new kid refetches.
	srv.setKeys(midIssuer.JWKS())
	midToken, _, _ := midIssuer.Issue(1, "a@b.c", auth.RoleCustomer)
	if _, err := verifier.Verify(ctx, midToken); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("fetches = %d; want 2", got)
	}

	// Another rotation with the limiter spent: an unknown kid is rejected without a fetch,
	// however many tokens carry it, concurrently or not.
	srv.setKeys(newIssuer.JWKS())
	newToken, _, _ := newIssuer.Issue(1, "a@b.c", auth.RoleCustomer)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := verifier.Verify(ctx, newToken); !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("unknown kid with the limiter spent: %v; want ErrInvalidToken", err)
			}
		})
	}
	wg.Wait()
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("fetches = %d; want 2 (rate limited)", got)
	}
	if _, err := verifier.Verify(ctx, midToken); err != nil {
		t.Fatalf("cached key while rate limited: %v", err)
	}

	// Once the limiter allows it, the next unknown kid fetches again.
	limiter.SetLimit(rate.Inf)
	if _, err := verifier.Verify(ctx, newToken); err != nil {
		t.Fatalf("new kid once the limiter allows: %v", err)
	}
	if got := srv.hits.Load(); got != 3 {
		t.Fatalf("fetches = %d; want 3", got)
	}
}

func TestJWKSKeepsLastGoodKeysOnFailure(t *testing.T) {
	issuer := auth.NewEd25519Issuer(newKey(t), auth.IssuerConfig{})
	srv := newJWKSServer(t, issuer.JWKS())
	limiter := rate.NewLimiter(rate.Every(time.Hour), 1)
	verifier := jwksVerifier(t, srv, auth.JWKSOptions{RefreshUnknownKID: limiter})
	ctx := context.Background()
	token, _, _ := issuer.Issue(1, "a@b.c", auth.RoleCustomer)
	if _, err := verifier.Verify(ctx, token); err != nil {
		t.Fatal(err)
	}

	// An unknown kid while the server is down: one attempt, then rate limited; the known key
	// keeps verifying throughout.
	srv.fail.Store(true)
	other, _, _ := auth.NewEd25519Issuer(newKey(t), auth.IssuerConfig{}).Issue(1, "a@b.c", auth.RoleCustomer)
	for range 3 {
		if _, err := verifier.Verify(ctx, other); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("unknown kid with the server down: %v", err)
		}
		if _, err := verifier.Verify(ctx, token); err != nil {
			t.Fatalf("known key after a failed fetch: %v", err)
		}
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("fetches = %d; want 2 (start, one attempt while down)", got)
	}
}

// The background refresh failing (the users service down for a while) keeps the keys too.
func TestJWKSBackgroundRefreshKeepsKeysWhileDown(t *testing.T) {
	issuer := auth.NewEd25519Issuer(newKey(t), auth.IssuerConfig{})
	srv := newJWKSServer(t, issuer.JWKS())
	// A limiter that never allows an unknown-kid fetch: every fetch here is the background one.
	verifier := jwksVerifier(t, srv, auth.JWKSOptions{RefreshUnknownKID: rate.NewLimiter(0, 0),
		RefreshInterval: 5 * time.Millisecond})
	token, _, _ := issuer.Issue(1, "a@b.c", auth.RoleCustomer)
	srv.fail.Store(true)
	waitFor(t, "three failed background fetches", func() bool { return srv.failed.Load() >= 3 })
	if _, err := verifier.Verify(context.Background(), token); err != nil {
		t.Fatalf("known key after failed background refreshes: %v", err)
	}
	// The background refresh also picks up a rotated key without any unknown-kid fetch.
	rotated := auth.NewEd25519Issuer(newKey(t), auth.IssuerConfig{})
	srv.setKeys(rotated.JWKS())
	srv.fail.Store(false)
	rotatedToken, _, _ := rotated.Issue(1, "a@b.c", auth.RoleCustomer)
	waitFor(t, "the rotated key to arrive", func() bool {
		_, err := verifier.Verify(context.Background(), rotatedToken)
		return err == nil
	})
}

// waitFor polls cond until it holds; the deadline only turns a hang into a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestJWKSUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	// The service starts without the keys rather than failing.
	keys, err := auth.NewJWKS(t.Context(), "http://"+addr+"/.well-known/jwks.json", auth.JWKSOptions{Timeout: time.Second})
	if err != nil {
		t.Fatalf("NewJWKS with the users service down: %v", err)
	}
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	token, _, _ := auth.NewEd25519Issuer(newKey(t), auth.IssuerConfig{}).Issue(1, "a@b.c", auth.RoleCustomer)
	if _, err := verifier.Verify(context.Background(), token); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("Verify = %v; want ErrInvalidToken", err)
	}
}

func TestThumbprintRFC8037(t *testing.T) {
	// RFC 8037 appendix A.3.
	x, _ := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if got := auth.Thumbprint(x); got != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Fatalf("thumbprint = %s", got)
	}
	jwk := auth.PublicJWK(x)
	if jwk.Kty != "OKP" || jwk.Crv != "Ed25519" || jwk.X != "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" {
		t.Fatalf("jwk = %+v", jwk)
	}
	// What the users service publishes is what jwkset, under keyfunc, reads back.
	raw, _ := json.Marshal(jwk)
	parsed, err := jwkset.NewJWKFromRawJSON(raw, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		t.Fatalf("jwkset rejects the published JWK: %v", err)
	}
	if got, ok := parsed.Key().(ed25519.PublicKey); !ok || !got.Equal(ed25519.PublicKey(x)) || parsed.Marshal().KID != jwk.Kid {
		t.Fatalf("jwkset read %T %v kid %q", parsed.Key(), parsed.Key(), parsed.Marshal().KID)
	}
}

func TestLoadOrCreateEd25519Key(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "users-ed25519.pem")
	key, err := auth.LoadOrCreateEd25519Key(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	again, err := auth.LoadOrCreateEd25519Key(path)
	if err != nil || !again.Equal(key) {
		t.Fatalf("reload = %v; want the same key", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.LoadOrCreateEd25519Key(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key: err = %v; want a refusal", err)
	}
	garbage := filepath.Join(t.TempDir(), "bad.pem")
	_ = os.WriteFile(garbage, []byte("nope"), 0o600)
	if _, err := auth.LoadOrCreateEd25519Key(garbage); err == nil {
		t.Fatal("garbage key file accepted")
	}
}

// TestInstallEd25519Key: a key made the way docs/operations.md tells (openssl genpkey) and
// mounted group-readable, as a Kubernetes Secret volume with fsGroup is, installs with mode 0600
// where the service loads it; a key that is not Ed25519 never replaces the installed one.
func TestInstallEd25519Key(t *testing.T) {
	openssl := testenv.RequireBinary(t, "openssl")
	dir := t.TempDir()
	src := filepath.Join(dir, "secret", "users-ed25519.pem")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(openssl, "genpkey", "-algorithm", "ed25519", "-out", src).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v: %s", err, out)
	}
	if err := os.Chmod(src, 0o440); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.LoadOrCreateEd25519Key(src); err == nil {
		t.Fatal("the group-readable source was accepted as it is; the install step would be pointless")
	}
	dst := filepath.Join(dir, "keys", "users-ed25519.pem")
	installed, err := auth.InstallEd25519Key(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dst)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("installed key mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	loaded, err := auth.LoadOrCreateEd25519Key(dst)
	if err != nil || !loaded.Equal(installed) {
		t.Fatalf("load installed key: %v; want the installed key", err)
	}
	// A second replica installing the same Secret signs with the same key (same kid).
	other := filepath.Join(dir, "other", "users-ed25519.pem")
	again, err := auth.InstallEd25519Key(src, other)
	if err != nil || auth.Thumbprint(again.Public().(ed25519.PublicKey)) != auth.Thumbprint(installed.Public().(ed25519.PublicKey)) {
		t.Fatalf("second install: %v; want the same key id", err)
	}

	rsaKey := filepath.Join(dir, "secret", "rsa.pem")
	if out, err := exec.Command(openssl, "genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsaKey).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey rsa: %v: %s", err, out)
	}
	for _, bad := range []string{rsaKey, filepath.Join(dir, "missing.pem")} {
		if _, err := auth.InstallEd25519Key(bad, dst); err == nil {
			t.Errorf("install %s: no error", filepath.Base(bad))
		}
	}
	if kept, err := auth.LoadOrCreateEd25519Key(dst); err != nil || !kept.Equal(installed) {
		t.Fatalf("after refused installs the installed key changed: %v", err)
	}
}

func TestRequire(t *testing.T) {
	key := newKey(t)
	issuer := auth.NewEd25519Issuer(key, auth.IssuerConfig{})
	verifier, _ := auth.NewVerifier(auth.VerifierConfig{Keys: issuer.Keys()})
	customer, _, _ := issuer.Issue(5, "c@x.io", auth.RoleCustomer)
	admin, _, _ := issuer.Issue(6, "a@x.io", auth.RoleAdmin)
	var seen *auth.Claims
	h := verifier.Require(func(ctx *fasthttp.RequestCtx) error {
		seen = auth.ClaimsFrom(ctx)
		ctx.SetStatusCode(204)
		return nil
	}, auth.RoleAdmin)
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"no token", nil, 401},
		{"not bearer", map[string]string{"Authorization": "Basic " + admin}, 401},
		{"bad token", map[string]string{"Authorization": "Bearer nope"}, 401},
		{"customer", map[string]string{"Authorization": "Bearer " + customer}, 403},
		{"identity headers alone", map[string]string{"X-User-Id": "6", "X-User-Role": "admin"}, 401},
		{"headers contradict token", map[string]string{"Authorization": "Bearer " + customer, "X-User-Role": "admin"}, 401},
		{"header user id contradicts token", map[string]string{"Authorization": "Bearer " + admin, "X-User-Id": "5"}, 401},
		{"admin", map[string]string{"Authorization": "Bearer " + admin}, 204},
		{"admin, lower-case scheme, matching headers", map[string]string{"Authorization": "bearer " + admin, "X-User-Id": "6", "X-User-Role": "admin"}, 204},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen = nil
			var ctx fasthttp.RequestCtx
			for k, v := range tc.headers {
				ctx.Request.Header.Set(k, v)
			}
			status := 0
			if err := h(&ctx); err != nil {
				status = api.WriteError(&ctx, err)
			} else {
				status = ctx.Response.StatusCode()
			}
			if status != tc.want {
				t.Fatalf("status = %d; want %d (%s)", status, tc.want, ctx.Response.Body())
			}
			if tc.want == 204 && (seen == nil || seen.Subject != "6") {
				t.Fatalf("claims seen by handler = %+v", seen)
			}
			if tc.want == 401 && string(ctx.Response.Header.Peek("WWW-Authenticate")) != "Bearer" {
				t.Fatal("401 without WWW-Authenticate: Bearer")
			}
		})
	}
}

// A service that starts before the users service must not reject tokens for a whole refresh
// interval: while no fetch has brought keys, an unknown kid retries at RetryWithoutKeys; once
// keys are there, the configured limiter's own rate applies again.
func TestJWKSRetriesSoonWhileItHasNoKeys(t *testing.T) {
	issuer := auth.NewEd25519Issuer(newKey(t), auth.IssuerConfig{})
	srv := newJWKSServer(t, issuer.JWKS())
	srv.fail.Store(true) // users is not up yet
	verifier := jwksVerifier(t, srv, auth.JWKSOptions{
		RefreshUnknownKID: rate.NewLimiter(rate.Every(time.Hour), 1),
		RetryWithoutKeys:  time.Millisecond,
	})
	token, _, _ := issuer.Issue(1, "a@b.c", auth.RoleCustomer)
	ctx := context.Background()
	if _, err := verifier.Verify(ctx, token); err == nil {
		t.Fatal("verified without keys")
	}
	// The hourly limiter would refuse now; the retry rate lets the next attempt through.
	srv.fail.Store(false) // users is up
	if _, err := verifier.Verify(ctx, token); err != nil {
		t.Fatalf("after users came up: %v", err)
	}
	if got := srv.hits.Load(); got != 3 {
		t.Fatalf("fetches = %d; want 3 (start, two attempts)", got)
	}
	// Keys are there: back to one unknown-kid fetch per hour. At most the token the limiter
	// held may still be spent; with the retry rate still in force, every attempt would fetch.
	forged, _, _ := auth.NewEd25519Issuer(newKey(t), auth.IssuerConfig{}).Issue(1, "a@b.c", auth.RoleCustomer)
	for range 10 {
		if _, err := verifier.Verify(ctx, forged); err == nil {
			t.Fatal("forged kid accepted")
		}
	}
	if got := srv.hits.Load(); got > 4 {
		t.Fatalf("fetches = %d after 10 unknown kids with keys cached; want at most 4", got)
	}
}

// A service built from flags starts while the users service is down and verifies the first
// token after users is up, without a restart.
func TestVerifierSettingsStartBeforeUsers(t *testing.T) {
	issuer := auth.NewEd25519Issuer(newKey(t), auth.IssuerConfig{})
	srv := newJWKSServer(t, issuer.JWKS())
	srv.fail.Store(true)
	settings := &auth.VerifierSettings{JWKSURL: srv.URL, Issuer: auth.DefaultIssuer, Audience: auth.DefaultAudience}
	verifier, err := settings.NewVerifier(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	token, _, _ := issuer.Issue(1, "a@b.c", auth.RoleCustomer)
	if _, err := verifier.Verify(context.Background(), token); err == nil {
		t.Fatal("verified while users is down")
	}
	srv.fail.Store(false)
	// The default retry rate (1 s) is within the fetch timeout (5 s): this call waits for its
	// turn rather than being refused.
	if _, err := verifier.Verify(context.Background(), token); err != nil {
		t.Fatalf("Verify once users is up: %v", err)
	}
	before := srv.hits.Load()
	if _, err := verifier.Verify(context.Background(), token); err != nil || srv.hits.Load() != before {
		t.Fatalf("second Verify: %v, fetches %d -> %d; want cached", err, before, srv.hits.Load())
	}
}

func TestVerifierSettingsHS256(t *testing.T) {
	secret := strings.Repeat("z", 32)
	v, err := (&auth.VerifierSettings{Secret: secret}).NewVerifier(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	iss, _ := auth.NewHS256Issuer([]byte(secret), auth.IssuerConfig{})
	token, _, _ := iss.Issue(9, "h@s.io", auth.RoleAdmin)
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatal(err)
	}
}
