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
