//go:build !race

// Allocation counts are only meaningful without the race detector, which makes sync.Pool drop
// objects on purpose; `make test` runs these in a separate pass without -race.

package auth

import (
	"errors"
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
		want   error // the refusal; nil: accepted
		allocs float64
	}{
		"EdDSA":                 {v, ed.Token(t, claims), nil, 0},
		"HS256":                 {hs, authtest.Sign(t, map[string]any{"alg": "HS256"}, claims, authtest.HMACSigner(secret)), nil, 0},
		"refused/expired":       {v, ed.Token(t, expired), ErrExpired, 0},
		"refused/alg-none":      {v, authtest.Sign(t, map[string]any{"alg": "none"}, claims, func([]byte) []byte { return nil }), ErrAlgNone, 0},
		"refused/unknown-kid":   {v, authtest.NewKey(t).Token(t, claims), ErrUnknownKid, 0},
		"refused/bad-signature": {v, authtest.Sign(t, map[string]any{"alg": "EdDSA", "kid": ed.Kid}, claims, authtest.NewKey(t).Signer()), ErrBadSignature, 1},
	} {
		token := []byte(tc.token)
		var err error
		run := func() {
			tok := AcquireToken()
			err = tc.v.Verify(token, time.Now(), tok)
			if _, ok := tok.ClaimBytes("sub"); !ok && tc.want == nil {
				t.Fatal("no sub")
			}
			ReleaseToken(tok)
		}
		run()
		// The measured path must be the one named: a refusal for another reason (or none)
		// would measure some other path's allocations.
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Fatalf("%s: Verify = %v, want %v", name, err, tc.want)
		}
		if allocs := testing.AllocsPerRun(500, run); allocs > tc.allocs {
			t.Errorf("%s: %.1f allocations per verification, want at most %.0f", name, allocs, tc.allocs)
		}
	}
}
