// Package auth issues and verifies the JWTs the backend services share.
//
// The users service signs tokens with an Ed25519 key (alg EdDSA, header kid = the key's RFC 7638
// thumbprint) and publishes the public key at GET /.well-known/jwks.json. Every other service
// verifies tokens itself with a Verifier whose keys come from a JWKS (github.com/MicahParks/keyfunc)
// pointed at that endpoint. As a documented alternative all services share an HS256 secret (JWT_SECRET); a
// Verifier accepts exactly one algorithm, so a token signed with the other is always rejected.
//
// Identity headers the gateway adds (X-User-Id, X-User-Email, X-User-Role) are never trusted on
// their own: Verifier.Require takes the identity from the verified token and rejects a request
// whose headers contradict it.
package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Roles a token can carry.
const (
	RoleCustomer = "customer"
	RoleAdmin    = "admin"
)

// Defaults for the iss and aud claims.
const (
	DefaultIssuer   = "archway-users"
	DefaultAudience = "archway"
)

// Claims are the claims of an Archway token: the registered ones (iss, aud, sub, iat, exp, jti)
// plus email and role. Subject is the user id in decimal.
type Claims struct {
	Email string `json:"email"`
	Role  string `json:"role"`
	jwt.RegisteredClaims
}

// UserID returns the subject as the numeric user id.
func (c *Claims) UserID() (int64, error) {
	id, err := strconv.ParseInt(c.Subject, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("subject %q is not a user id", c.Subject)
	}
	return id, nil
}

// IsAdmin reports whether the token carries the admin role.
func (c *Claims) IsAdmin() bool { return c.Role == RoleAdmin }

// ValidRole reports whether role is one a token may carry.
func ValidRole(role string) bool { return role == RoleCustomer || role == RoleAdmin }

// IssuerConfig configures an Issuer. Zero fields take DefaultIssuer, DefaultAudience and 24 h.
type IssuerConfig struct {
	Issuer   string
	Audience string
	TTL      time.Duration
	// Now returns the current time; time.Now when nil (tests set it to mint expired tokens).
	Now func() time.Time
}

func (c *IssuerConfig) defaults() {
	if c.Issuer == "" {
		c.Issuer = DefaultIssuer
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.TTL == 0 {
		c.TTL = 24 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Issuer signs tokens. It is immutable and safe for concurrent use.
type Issuer struct {
	cfg    IssuerConfig
	method jwt.SigningMethod
	key    any
	kid    string
	public ed25519.PublicKey
}

// NewEd25519Issuer signs with key (alg EdDSA); the kid header is the key's thumbprint.
func NewEd25519Issuer(key ed25519.PrivateKey, cfg IssuerConfig) *Issuer {
	cfg.defaults()
	pub := key.Public().(ed25519.PublicKey)
	return &Issuer{cfg: cfg, method: jwt.SigningMethodEdDSA, key: key, kid: Thumbprint(pub), public: pub}
}

// MinSecretLength is the shortest HS256 secret accepted, in bytes.
const MinSecretLength = 32

// NewHS256Issuer signs with a shared secret of at least MinSecretLength bytes (alg HS256).
func NewHS256Issuer(secret []byte, cfg IssuerConfig) (*Issuer, error) {
	if len(secret) < MinSecretLength {
		return nil, fmt.Errorf("JWT secret must be at least %d bytes, got %d", MinSecretLength, len(secret))
	}
	cfg.defaults()
	return &Issuer{cfg: cfg, method: jwt.SigningMethodHS256, key: secret}, nil
}

// Issue signs a token for the user and returns it with its claims.
func (i *Issuer) Issue(userID int64, email, role string) (string, *Claims, error) {
	if !ValidRole(role) {
		return "", nil, fmt.Errorf("issue token: invalid role %q", role)
	}
	now := i.cfg.Now().Truncate(time.Second)
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	claims := &Claims{
		Email: email,
		Role:  role,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.cfg.Issuer,
			Audience:  jwt.ClaimStrings{i.cfg.Audience},
			Subject:   strconv.FormatInt(userID, 10),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(i.cfg.TTL)),
			ID:        hex.EncodeToString(jti[:]),
		},
	}
	tok := jwt.NewWithClaims(i.method, claims)
	if i.kid != "" {
		tok.Header["kid"] = i.kid
	}
	signed, err := tok.SignedString(i.key)
	if err != nil {
		return "", nil, fmt.Errorf("sign token: %w", err)
	}
	return signed, claims, nil
}

// JWKS returns the public keys to publish: the Ed25519 key, or none for HS256.
func (i *Issuer) JWKS() JWKSet {
	if i.public == nil {
		return JWKSet{Keys: []JWK{}}
	}
	return JWKSet{Keys: []JWK{PublicJWK(i.public)}}
}

// Keys returns the issuer's public key as a key source, so the issuing service verifies its own
// tokens without fetching its own JWKS. Nil for HS256.
func (i *Issuer) Keys() Keys {
	if i.public == nil {
		return nil
	}
	keys, err := staticKeys(i.kid, i.public)
	if err != nil {
		// jwkset supports Ed25519 public keys; failing here means the library broke that.
		panic(fmt.Sprintf("auth: %v", err))
	}
	return keys
}

// Algorithm returns the JWS alg the issuer signs with: "EdDSA" or "HS256".
func (i *Issuer) Algorithm() string { return i.method.Alg() }

// ErrInvalidToken is wrapped by every verification failure.
var ErrInvalidToken = errors.New("invalid token")
