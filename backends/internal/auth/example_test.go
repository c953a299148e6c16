package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"

	"github.com/archway-gateway/archway/backends/internal/auth"
)

// A service other than users verifies tokens with the users service's public keys. In production
// Keys is auth.NewJWKS(ctx, "http://users:3001/.well-known/jwks.json", auth.JWKSOptions{}); here
// the issuer's own keys stand in for the fetched set.
func ExampleVerifier() {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	issuer := auth.NewEd25519Issuer(key, auth.IssuerConfig{})
	token, _, _ := issuer.Issue(42, "ana@example.com", auth.RoleCustomer)

	verifier, err := auth.NewVerifier(auth.VerifierConfig{Keys: issuer.Keys()})
	if err != nil {
		panic(err)
	}
	claims, err := verifier.Verify(context.Background(), token)
	if err != nil {
		panic(err)
	}
	id, _ := claims.UserID()
	fmt.Println(id, claims.Email, claims.Role, claims.IsAdmin())
	// Output: 42 ana@example.com customer false
}
