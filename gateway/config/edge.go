package config

import (
	"fmt"
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

// JWT modes of a route.
const (
	JWTRequired = "required"
	JWTOptional = "optional"
)

// Auth is a route's token policy.
type Auth struct {
	// JWT is "required" (no valid token: 401) or "optional" (no token: passed on anonymous; an
	// invalid token is still a 401).
	JWT string `yaml:"jwt"`
	// ForwardClaims maps a claim name to the request header that carries its value upstream.
	// Those headers are always removed from the client's request first.
	ForwardClaims map[string]string `yaml:"forward_claims,omitempty"`
}

// CORS is a route's cross-origin policy; the gateway answers preflight requests itself.
type CORS struct {
	// Origins are exact origins ("https://shop.example.com"), subdomain wildcards
	// ("https://*.example.com") or "*" for any.
	Origins       []string `yaml:"origins"`
	Methods       []string `yaml:"methods"`
	Headers       []string `yaml:"headers"`
	ExposeHeaders []string `yaml:"expose_headers,omitempty"`
	Credentials   bool     `yaml:"credentials"`
	MaxAge        Duration `yaml:"max_age"`
}

// Compression is a route's gzip policy for responses the upstream did not compress.
type Compression struct {
	MinSize Size     `yaml:"min_size"`
	MaxSize Size     `yaml:"max_size"`
	Level   int      `yaml:"level"`
	Types   []string `yaml:"types"`
}

// Static serves a route from files under Root instead of an upstream.
type Static struct {
	// Root is the directory served; in a file loaded with Load a relative path is relative to
	// the file's directory (elsewhere, to the gateway's working directory).
	Root string `yaml:"root"`
	// Index is the file served for a directory.
	Index string `yaml:"index"`
	// SPAFallback, a path under Root, is served for GET and HEAD requests that match no file
	// (except under Immutable prefixes), so a single-page app's own routes load it.
	SPAFallback string `yaml:"spa_fallback,omitempty"`
	// Immutable are path prefixes (below the route, after strip_prefix) of content-hashed files,
	// cached by browsers for a year.
	Immutable []string `yaml:"immutable"`
}

// Edge defaults. docs/configuration.md lists the same values.
const (
	DefaultJWTLeeway         = Duration(5 * time.Second)
	DefaultJWKSRefresh       = Duration(10 * time.Minute)
	DefaultJWKSMinRefresh    = Duration(30 * time.Second)
	DefaultJWKSTimeout       = Duration(5 * time.Second)
	DefaultCORSMaxAge        = Duration(10 * time.Minute)
	DefaultCompressMinSize   = Size(1 << 10)
	DefaultCompressMaxSize   = Size(1 << 20)
	DefaultCompressLevel     = 1
	DefaultStaticIndex       = "index.html"
	MinJWTSecretLength       = 32
	MaxJWTLeeway             = Duration(5 * time.Minute)
	MaxCORSMaxAge            = Duration(24 * time.Hour)
	MaxCompressBufferedBytes = Size(64 << 20)
)

// DefaultCORSHeaders are the request headers a cross-origin request may carry when cors.headers
// is left out.
func DefaultCORSHeaders() []string {
	return []string{"Accept", "Authorization", "Content-Type", "X-Request-Id"}
}

// DefaultCompressTypes are the media types gzip applies to when compression.types is left out:
// text formats and their application/* cousins, not images, fonts or event streams.
func DefaultCompressTypes() []string {
	return []string{
		"text/html", "text/css", "text/plain", "text/xml", "text/javascript",
		"application/javascript", "application/json", "application/problem+json", "application/xml",
		"application/rss+xml", "application/atom+xml", "application/manifest+json", "image/svg+xml",
	}
}

// DefaultStaticImmutable are the hashed-asset prefixes when static.immutable is left out: where
// Vite (the storefront's bundler) writes content-hashed files.
func DefaultStaticImmutable() []string { return []string{"/assets/"} }

func (c *Config) fieldWritten(path string) bool {
	_, ok := c.positions[path]
	return ok
}

func (c *Config) applyEdgeDefaults() {
	if j := c.JWT; j != nil {
		if len(j.Algorithms) == 0 && !c.fieldWritten("jwt.algorithms") {
			if j.Secret != "" && j.JWKSURL == "" {
				j.Algorithms = []string{"HS256"}
			} else {
				j.Algorithms = []string{"EdDSA"}
			}
		}
		if !c.fieldWritten("jwt.leeway") {
			j.Leeway = DefaultJWTLeeway
		}
		setDefault(&j.JWKSRefresh, DefaultJWKSRefresh)
		setDefault(&j.JWKSMinRefresh, DefaultJWKSMinRefresh)
		setDefault(&j.JWKSTimeout, DefaultJWKSTimeout)
	}
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if s := r.Static; s != nil {
			setDefault(&s.Index, DefaultStaticIndex)
			if s.Immutable == nil && !c.fieldWritten(p+".static.immutable") {
				s.Immutable = DefaultStaticImmutable()
			}
			if len(r.Match.Methods) == 0 && !c.fieldWritten(p+".match.methods") {
				r.Match.Methods = []string{"GET", "HEAD"}
			}
		}
		if cors := r.CORS; cors != nil {
			if cors.Methods == nil && !c.fieldWritten(p+".cors.methods") {
				for _, m := range r.Match.Methods {
					if m != "OPTIONS" {
						cors.Methods = append(cors.Methods, m)
					}
				}
				if len(cors.Methods) == 0 {
					cors.Methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
				}
			}
			for j, m := range cors.Methods {
				cors.Methods[j] = strings.ToUpper(m)
			}
			if cors.Headers == nil && !c.fieldWritten(p+".cors.headers") {
				cors.Headers = DefaultCORSHeaders()
			}
			if !c.fieldWritten(p + ".cors.max_age") {
				cors.MaxAge = DefaultCORSMaxAge
			}
			// Preflight requests are OPTIONS: a route that lists its methods must match them too.
			if len(r.Match.Methods) > 0 && !slices.Contains(r.Match.Methods, "OPTIONS") {
				r.Match.Methods = append(r.Match.Methods, "OPTIONS")
			}
		}
		if z := r.Compression; z != nil {
			if !c.fieldWritten(p + ".compression.min_size") {
				z.MinSize = DefaultCompressMinSize
			}
			setDefault(&z.MaxSize, DefaultCompressMaxSize)
			setDefault(&z.Level, DefaultCompressLevel)
			if z.Types == nil && !c.fieldWritten(p+".compression.types") {
				z.Types = DefaultCompressTypes()
			}
			for j, t := range z.Types {
				z.Types[j] = strings.ToLower(t)
			}
		}
	}
}
