package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEdgeDefaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		yaml  string
		check func(t *testing.T, c *Config)
	}{
		{"HS256 by default with a secret", `
jwt: {secret: "0123456789abcdef0123456789abcdef"}
upstreams: {u: {targets: ["127.0.0.1:1"]}}
routes: [{name: r, match: {path_prefix: /}, upstream: u, auth: {jwt: optional}}]`, func(t *testing.T, c *Config) {
			if !slices.Equal(c.JWT.Algorithms, []string{"HS256"}) || c.JWT.Leeway != DefaultJWTLeeway {
				t.Errorf("jwt = %+v", c.JWT)
			}
		}},
		{"explicit zero leeway stays zero", `
jwt: {jwks_url: "https://id.example.com/jwks.json", leeway: 0s}
upstreams: {u: {targets: ["127.0.0.1:1"]}}
routes: [{name: r, match: {path_prefix: /}, upstream: u}]`, func(t *testing.T, c *Config) {
			if c.JWT.Leeway != 0 || !slices.Equal(c.JWT.Algorithms, []string{"EdDSA"}) || c.JWT.JWKSMinRefresh != Duration(30*time.Second) {
				t.Errorf("jwt = %+v", c.JWT)
			}
		}},
		{"cors adds OPTIONS to listed methods and takes them as its own", `
upstreams: {u: {targets: ["127.0.0.1:1"]}}
routes: [{name: r, match: {path_prefix: /, methods: [get, POST]}, upstream: u, cors: {origins: ["*"]}}]`, func(t *testing.T, c *Config) {
			r := c.Routes[0]
			if !slices.Equal(r.Match.Methods, []string{"GET", "POST", "OPTIONS"}) || !slices.Equal(r.CORS.Methods, []string{"GET", "POST"}) {
				t.Errorf("methods %v, cors methods %v", r.Match.Methods, r.CORS.Methods)
			}
		}},
		{"static routes serve GET and HEAD, assets under /assets/", `
upstreams: {u: {targets: ["127.0.0.1:1"]}}
routes: [{name: r, match: {path_prefix: /}, static: {root: dist}}]`, func(t *testing.T, c *Config) {
			r := c.Routes[0]
			if !slices.Equal(r.Match.Methods, []string{"GET", "HEAD"}) || r.Static.Index != "index.html" ||
				!slices.Equal(r.Static.Immutable, []string{"/assets/"}) || r.Timeout != 0 {
				t.Errorf("route %+v, static %+v", r, r.Static)
			}
		}},
		{"an empty compression section takes every default", `
upstreams: {u: {targets: ["127.0.0.1:1"]}}
routes: [{name: r, match: {path_prefix: /}, upstream: u, compression: {types: [Application/JSON]}}]`, func(t *testing.T, c *Config) {
			z := c.Routes[0].Compression
			if z.MinSize != 1024 || z.MaxSize != 1<<20 || z.Level != 1 || !slices.Equal(z.Types, []string{"application/json"}) {
				t.Errorf("compression %+v", z)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), "t.yaml")
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

// TestJWTSecretRedactedButDigested: the secret never shows, yet rotating it is a change.
func TestJWTSecretRedactedButDigested(t *testing.T) {
	parse := func(secret string) *Config {
		c, err := Parse([]byte(`
jwt: {secret: "`+secret+`"}
upstreams: {u: {targets: ["127.0.0.1:1"]}}
routes: [{name: r, match: {path_prefix: /}, upstream: u, auth: {jwt: required}}]`), "t.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := parse(strings.Repeat("a", 32)), parse(strings.Repeat("b", 32))
	if strings.Contains(string(a.Redacted()), "aaaa") || !strings.Contains(string(a.Redacted()), "[redacted]") {
		t.Fatalf("secret shown:\n%s", a.Redacted())
	}
	if a.Digest() == b.Digest() {
		t.Fatal("rotating the JWT secret does not change the digest")
	}
	if a.JWT.Secret.Reveal() != strings.Repeat("a", 32) {
		t.Fatal("Digest modified the configuration")
	}
}
