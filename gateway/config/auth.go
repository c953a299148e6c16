package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// JWT configures token verification at the edge, shared by every route with auth. Keys come from
// exactly one of JWKSURL (asymmetric algorithms) and Secret (HS256).
type JWT struct {
	// JWKSURL is fetched in the background and cached; an unknown kid refetches it, at most once
	// per JWKSMinRefresh. A failed fetch keeps the last good keys.
	JWKSURL string `yaml:"jwks_url,omitempty"`
	// Secret is an HS256 shared secret of at least 32 bytes.
	Secret Secret `yaml:"secret,omitempty"`
	// Issuer and Audience, when set, must match the token's iss and one of its aud.
	Issuer   string `yaml:"issuer,omitempty"`
	Audience string `yaml:"audience,omitempty"`
	// Algorithms a token's alg must be one of: [EdDSA] with a JWKS URL, [HS256] with a secret.
	Algorithms []string `yaml:"algorithms"`
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway         Duration `yaml:"leeway"`
	JWKSRefresh    Duration `yaml:"jwks_refresh"`
	JWKSMinRefresh Duration `yaml:"jwks_min_refresh"`
	JWKSTimeout    Duration `yaml:"jwks_timeout"`
}

// JWT algorithms the gateway verifies, and which key source each needs.
var (
	JWKSAlgorithms   = []string{"EdDSA", "ES256", "RS256"}
	SecretAlgorithms = []string{"HS256"}
)

// JWTMode is how a route treats tokens: auth.jwt.
type JWTMode string

// JWT modes of a route.
const (
	JWTRequired JWTMode = "required"
	JWTOptional JWTMode = "optional"
)

// Auth is a route's token policy.
type Auth struct {
	// JWT is "required" (no valid token: 401) or "optional" (no token: passed on anonymous; an
	// invalid token is still a 401).
	JWT JWTMode `yaml:"jwt"`
	// ForwardClaims maps a claim name to the request header that carries its value upstream.
	// Those headers are always removed from the client's request first.
	ForwardClaims map[string]string `yaml:"forward_claims,omitempty"`
}

// JWT defaults and bounds. docs/configuration.md lists the same values.
const (
	DefaultJWTLeeway      = Duration(5 * time.Second)
	DefaultJWKSRefresh    = Duration(10 * time.Minute)
	DefaultJWKSMinRefresh = Duration(30 * time.Second)
	DefaultJWKSTimeout    = Duration(5 * time.Second)
	MinJWTSecretLength    = 32
	MaxJWTLeeway          = Duration(5 * time.Minute)
)

func (c *Config) jwtDefaults() {
	j := c.JWT
	if j == nil {
		return
	}
	if len(j.Algorithms) == 0 && !c.written("jwt.algorithms") {
		if j.Secret != "" && j.JWKSURL == "" {
			j.Algorithms = []string{"HS256"}
		} else {
			j.Algorithms = []string{"EdDSA"}
		}
	}
	if !c.written("jwt.leeway") {
		j.Leeway = DefaultJWTLeeway
	}
	setDefault(&j.JWKSRefresh, DefaultJWKSRefresh)
	setDefault(&j.JWKSMinRefresh, DefaultJWKSMinRefresh)
	setDefault(&j.JWKSTimeout, DefaultJWKSTimeout)
}

func (v *validator) jwt() {
	j := v.c.JWT
	if j == nil {
		return
	}
	switch {
	case j.JWKSURL == "" && j.Secret == "":
		v.errorf("jwt", "needs jwks_url (EdDSA, ES256, RS256) or secret (HS256)")
	case j.JWKSURL != "" && j.Secret != "":
		v.errorf("jwt.secret", "jwks_url and secret are exclusive: a key source per gateway keeps an HMAC secret from ever being tried against a public key")
	}
	if j.JWKSURL != "" {
		u, err := url.Parse(j.JWKSURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errorf("jwt.jwks_url", "must be an http or https URL, got %q", j.JWKSURL)
		}
	}
	if j.Secret != "" && len(j.Secret) < MinJWTSecretLength {
		v.errorf("jwt.secret", "must be at least %d bytes, got %d", MinJWTSecretLength, len(j.Secret))
	}
	if len(j.Algorithms) == 0 {
		v.errorf("jwt.algorithms", "at least one algorithm is required")
	}
	seen := map[string]bool{}
	for i, alg := range j.Algorithms {
		p := fmt.Sprintf("jwt.algorithms[%d]", i)
		switch {
		case strings.EqualFold(alg, "none"):
			v.errorf(p, `"none" means unsigned tokens; it is never accepted`)
		case slices.Contains(JWKSAlgorithms, alg):
			if j.JWKSURL == "" && j.Secret != "" {
				v.errorf(p, "%s needs public keys (jwks_url); with a secret only HS256 applies", alg)
			}
		case slices.Contains(SecretAlgorithms, alg):
			if j.Secret == "" && j.JWKSURL != "" {
				v.errorf(p, "HS256 needs a secret; a JWKS holds public keys, and checking an HMAC against one is the algorithm-confusion attack")
			}
		default:
			all := append(slices.Clone(JWKSAlgorithms), SecretAlgorithms...)
			v.errorf(p, "unsupported algorithm %q; one of %s%s", alg, strings.Join(all, ", "), suggest(alg, all))
		}
		if seen[alg] {
			v.errorf(p, "duplicate algorithm %q", alg)
		}
		seen[alg] = true
	}
	if j.Leeway > MaxJWTLeeway {
		v.errorf("jwt.leeway", "must be at most %s, got %s", MaxJWTLeeway.D(), j.Leeway.D())
	}
	v.positive("jwt.jwks_refresh", j.JWKSRefresh)
	v.positive("jwt.jwks_min_refresh", j.JWKSMinRefresh)
	v.positive("jwt.jwks_timeout", j.JWKSTimeout)
}

func (v *validator) auth(p string, r *Route) {
	a := r.Auth
	p += ".auth"
	if a.JWT != JWTRequired && a.JWT != JWTOptional {
		v.errorf(p+".jwt", "must be required or optional, got %q%s", a.JWT, suggest(string(a.JWT), []string{string(JWTRequired), string(JWTOptional)}))
	}
	if v.c.JWT == nil {
		v.errorf(p+".jwt", "needs the top-level jwt section (jwks_url or secret, issuer, audience)")
	}
	targets := map[string]string{}
	for _, claim := range sortedKeys(a.ForwardClaims) {
		header := a.ForwardClaims[claim]
		cp := p + ".forward_claims." + claim
		if claim == "" {
			v.errorf(cp, "claim name is empty")
		}
		v.settableHeader(cp, header, "", true)
		canonical := strings.ToLower(header)
		switch canonical {
		case "authorization", "cookie", "host", "x-request-id", "x-forwarded-for", "forwarded":
			v.errorf(cp, "%s is managed by the client or the gateway; pick a header of its own, e.g. X-User-Id", header)
		}
		if prev, dup := targets[canonical]; dup {
			v.errorf(cp, "header %q already carries claim %q", header, prev)
		}
		targets[canonical] = claim
	}
}
