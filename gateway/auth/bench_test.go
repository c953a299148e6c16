package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/auth/authtest"
)

// BenchmarkVerify measures one token verification (decode, header, signature, claims) per
// algorithm, and the cheap refusals a flood of bad tokens costs.
func BenchmarkVerify(b *testing.B) {
	ed := authtest.NewKey(b)
	ec := authtest.NewECKey(b, "ec")
	rs := authtest.NewRSAKey(b, "rs")
	v, _, _ := newJWKSVerifier(b, []string{"EdDSA", "ES256", "RS256"}, KeySetOptions{Logger: quiet}, ed.JWK(), ec.JWK(), rs.JWK())
	secret := []byte(strings.Repeat("k", 32))
	hs, err := NewVerifier(VerifierConfig{Secret: secret, Algorithms: []string{"HS256"}, Issuer: "archway-users", Audience: "archway"})
	if err != nil {
		b.Fatal(err)
	}
	claims := authtest.Claims("42")
	expired := authtest.Claims("42")
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	for _, bc := range []struct {
		name  string
		v     *Verifier
		token string
		ok    bool
	}{
		{"EdDSA", v, ed.Token(b, claims), true},
		{"HS256", hs, authtest.Sign(b, map[string]any{"alg": "HS256", "typ": "JWT"}, claims, authtest.HMACSigner(secret)), true},
		{"ES256", v, authtest.Sign(b, map[string]any{"alg": "ES256", "kid": "ec"}, claims, ec.Signer()), true},
		{"RS256", v, authtest.Sign(b, map[string]any{"alg": "RS256", "kid": "rs"}, claims, rs.Signer()), true},
		{"refused/alg-none", v, authtest.Sign(b, map[string]any{"alg": "none"}, claims, func([]byte) []byte { return nil }), false},
		{"refused/bad-signature", v, authtest.Sign(b, map[string]any{"alg": "EdDSA", "kid": ed.Kid}, claims, authtest.NewKey(b).Signer()), false},
		{"refused/expired", v, ed.Token(b, expired), false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			token := []byte(bc.token)
			b.ReportAllocs()
			for b.Loop() {
				tok := AcquireToken()
				err := bc.v.Verify(token, time.Now(), tok)
				ReleaseToken(tok)
				if (err == nil) != bc.ok {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestVerifyAllocatesNothing holds EdDSA and HS256 verification, and refusals, at zero
// allocations. Exceptions are in the standard library: crypto/ed25519 allocates the error it
// returns for a bad signature (one allocation), and ES256 and RS256 allocate inside
// crypto/ecdsa and crypto/rsa.
func TestVerifyAllocatesNothing(t *testing.T) {
	ed := authtest.NewKey(t)
	v, _, _ := newJWKSVerifier(t, []string{"EdDSA"}, KeySetOptions{Logger: quiet}, ed.JWK())
	secret := []byte(strings.Repeat("k", 32))
	hs, _ := NewVerifier(VerifierConfig{Secret: secret, Algorithms: []string{"HS256"}, Audience: "archway"})
	claims := authtest.Claims("42")
	expired := authtest.Claims("42")
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	for name, tc := range map[string]struct {
		v      *Verifier
		token  string
		allocs float64
	}{
		"EdDSA":                 {v, ed.Token(t, claims), 0},
		"HS256":                 {hs, authtest.Sign(t, map[string]any{"alg": "HS256"}, claims, authtest.HMACSigner(secret)), 0},
		"refused/expired":       {v, ed.Token(t, expired), 0},
		"refused/alg-none":      {v, authtest.Sign(t, map[string]any{"alg": "none"}, claims, func([]byte) []byte { return nil }), 0},
		"refused/unknown-kid":   {v, authtest.NewKey(t).Token(t, claims), 0},
		"refused/bad-signature": {v, authtest.Sign(t, map[string]any{"alg": "EdDSA", "kid": ed.Kid}, claims, authtest.NewKey(t).Signer()), 1},
	} {
		token := []byte(tc.token)
		run := func() {
			tok := AcquireToken()
			_ = tc.v.Verify(token, time.Now(), tok)
			if _, ok := tok.ClaimBytes("sub"); !ok && tc.allocs == 0 && !strings.HasPrefix(name, "refused") {
				t.Fatal("no sub")
			}
			ReleaseToken(tok)
		}
		run()
		if allocs := testing.AllocsPerRun(500, run); allocs > tc.allocs {
			t.Errorf("%s: %.1f allocations per verification, want at most %.0f", name, allocs, tc.allocs)
		}
	}
}
