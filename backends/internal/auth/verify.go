package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/archway-gateway/archway/backends/internal/api"
)

// VerifierConfig configures a Verifier: exactly one of Keys (EdDSA) and Secret (HS256).
type VerifierConfig struct {
	Issuer   string // required iss; DefaultIssuer when empty
	Audience string // required aud; DefaultAudience when empty
	Keys     Keys   // Ed25519 keys by kid: a *JWKS, or an Issuer's Keys
	Secret   []byte // HS256 shared secret, at least MinSecretLength bytes
	// Leeway is the clock skew allowed on exp, iat and nbf (5 s when zero).
	Leeway time.Duration
	Now    func() time.Time // time.Now when nil
}

// Verifier checks tokens: signature (one algorithm only), iss, aud, exp (required), iat, nbf, a
// numeric sub and a known role. It is immutable and safe for concurrent use.
type Verifier struct {
	cfg    VerifierConfig
	parser *jwt.Parser
}

// NewVerifier returns a Verifier, or an error when the configuration names no key or both kinds.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Issuer == "" {
		cfg.Issuer = DefaultIssuer
	}
	if cfg.Audience == "" {
		cfg.Audience = DefaultAudience
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var alg string
	switch {
	case cfg.Keys != nil && cfg.Secret != nil:
		return nil, errors.New("verifier: configure either JWKS keys or an HS256 secret, not both")
	case cfg.Keys != nil:
		alg = jwt.SigningMethodEdDSA.Alg()
	case cfg.Secret != nil:
		if len(cfg.Secret) < MinSecretLength {
			return nil, fmt.Errorf("verifier: JWT secret must be at least %d bytes", MinSecretLength)
		}
		alg = jwt.SigningMethodHS256.Alg()
	default:
		return nil, errors.New("verifier: no keys and no secret configured")
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{alg}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
	)
	return &Verifier{cfg: cfg, parser: parser}, nil
}

// Verify checks token and returns its claims, or an error wrapping ErrInvalidToken.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	claims := &Claims{}
	_, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		if v.cfg.Secret != nil {
			return v.cfg.Secret, nil
		}
		// keyfunc tries every key of the set for a token without a kid; ours always carry one.
		if kid, _ := t.Header["kid"].(string); kid == "" {
			return nil, errors.New("token has no kid")
		}
		return v.cfg.Keys.KeyfuncCtx(ctx)(t)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if _, err := claims.UserID(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if !ValidRole(claims.Role) {
		return nil, fmt.Errorf("%w: role %q", ErrInvalidToken, claims.Role)
	}
	return claims, nil
}

// Identity headers the gateway may add. They are checked against the token, never trusted alone.
const (
	HeaderUserID    = "X-User-Id"
	HeaderUserEmail = "X-User-Email"
	HeaderUserRole  = "X-User-Role"
)

type claimsKey struct{}

// Authenticate verifies the request's "Authorization: Bearer <token>" and returns its claims. It
// fails with a 401 *api.Error when the token is missing or invalid, or when identity headers
// the gateway added contradict the token.
func (v *Verifier) Authenticate(ctx *fasthttp.RequestCtx) (*Claims, error) {
	authz := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	const scheme = "bearer " // the scheme is case-insensitive (RFC 9110 11.1)
	if len(authz) <= len(scheme) || !bytes.EqualFold(authz[:len(scheme)], []byte(scheme)) {
		return nil, api.Unauthorized("missing bearer token")
	}
	token := bytes.TrimSpace(authz[len(scheme):])
	if len(token) == 0 {
		return nil, api.Unauthorized("missing bearer token")
	}
	claims, err := v.Verify(context.Background(), string(token))
	if err != nil {
		return nil, &api.Error{Status: 401, Message: "invalid or expired token", Err: err}
	}
	for _, h := range []struct{ name, want string }{
		{HeaderUserID, claims.Subject}, {HeaderUserEmail, claims.Email}, {HeaderUserRole, claims.Role},
	} {
		if got := ctx.Request.Header.Peek(h.name); got != nil && string(got) != h.want {
			return nil, &api.Error{Status: 401, Message: "identity headers do not match the token",
				Err: fmt.Errorf("%s %q, token says %q", h.name, got, h.want)}
		}
	}
	ctx.SetUserValue(claimsKey{}, claims)
	api.SetLogUser(ctx, claims.Subject)
	return claims, nil
}

// Require wraps h so that it runs only for requests with a valid token (401 otherwise) whose role
// is one of roles (403 otherwise; any role when roles is empty). h reads the claims with
// ClaimsFrom.
func (v *Verifier) Require(h api.Handler, roles ...string) api.Handler {
	return func(ctx *fasthttp.RequestCtx) error {
		claims, err := v.Authenticate(ctx)
		if err != nil {
			return err
		}
		if len(roles) > 0 {
			allowed := false
			for _, r := range roles {
				allowed = allowed || claims.Role == r
			}
			if !allowed {
				return api.Forbidden("this endpoint requires role " + roles[0])
			}
		}
		return h(ctx)
	}
}

// ClaimsFrom returns the claims Authenticate verified for this request, or nil.
func ClaimsFrom(ctx *fasthttp.RequestCtx) *Claims {
	c, _ := ctx.UserValue(claimsKey{}).(*Claims)
	return c
}
