package auth

import (
	"context"
	"log/slog"

	"github.com/archway-gateway/archway/backends/internal/config"
)

// VerifierSettings are the flags of a service that verifies tokens issued by the users service.
type VerifierSettings struct {
	JWKSURL  string
	Secret   string
	Issuer   string
	Audience string
}

// RegisterVerifierFlags defines on fs:
//
//	-jwks-url      JWKS_URL      users' key set (http://127.0.0.1:3001/.well-known/jwks.json)
//	-jwt-secret    JWT_SECRET    HS256 shared secret; when set, used instead of the JWKS
//	-jwt-issuer    JWT_ISSUER    required iss (archway-users)
//	-jwt-audience  JWT_AUDIENCE  required aud (archway)
func RegisterVerifierFlags(fs *config.FlagSet) *VerifierSettings {
	s := &VerifierSettings{}
	fs.StringVar(&s.JWKSURL, "jwks-url", "JWKS_URL", "http://127.0.0.1:3001/.well-known/jwks.json",
		"URL of the users service's JWK Set")
	fs.StringVar(&s.Secret, "jwt-secret", "JWT_SECRET", "",
		"HS256 shared secret (at least 32 bytes); when set, only HS256 tokens are accepted and the JWKS is not used")
	fs.StringVar(&s.Issuer, "jwt-issuer", "JWT_ISSUER", DefaultIssuer, "required iss claim")
	fs.StringVar(&s.Audience, "jwt-audience", "JWT_AUDIENCE", DefaultAudience, "required aud claim")
	return s
}

// NewVerifier builds the Verifier the settings describe. In JWKS mode it fetches the key set
// once (a failure does not stop the service) and keeps it fresh in the background until ctx
// ends; while no keys have arrived, a token's unknown kid retries the fetch once per second.
func (s *VerifierSettings) NewVerifier(ctx context.Context, log *slog.Logger) (*Verifier, error) {
	cfg := VerifierConfig{Issuer: s.Issuer, Audience: s.Audience}
	if s.Secret != "" {
		cfg.Secret = []byte(s.Secret)
		return NewVerifier(cfg)
	}
	keys, err := NewJWKS(ctx, s.JWKSURL, JWKSOptions{Logger: log})
	if err != nil {
		return nil, err
	}
	cfg.Keys = keys
	return NewVerifier(cfg)
}
