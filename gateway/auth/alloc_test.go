//go:build !race

// Allocation counts are only meaningful without the race detector, which makes sync.Pool drop
// objects on purpose; `make test` runs these in a separate pass without -race.

package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/auth/authtest"
)

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
