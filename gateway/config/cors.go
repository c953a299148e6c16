package config

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

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

// CORS defaults and bounds. docs/configuration.md lists the same values.
const (
	DefaultCORSMaxAge = Duration(10 * time.Minute)
	MaxCORSMaxAge     = Duration(24 * time.Hour)
)

// DefaultCORSHeaders are the request headers a cross-origin request may carry when cors.headers
// is left out.
func DefaultCORSHeaders() []string {
	return []string{"Accept", "Authorization", "Content-Type", "X-Request-Id"}
}

// corsDefaults runs after staticDefaults: a static route's methods are what CORS allows by
// default.
func (c *Config) corsDefaults(p string, r *Route) {
	cors := r.CORS
	if cors.Methods == nil && !c.written(p+".cors.methods") {
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
	if cors.Headers == nil && !c.written(p+".cors.headers") {
		cors.Headers = DefaultCORSHeaders()
	}
	if !c.written(p + ".cors.max_age") {
		cors.MaxAge = DefaultCORSMaxAge
	}
	// Preflight requests are OPTIONS: a route that lists its methods must match them too.
	if len(r.Match.Methods) > 0 && !slices.Contains(r.Match.Methods, "OPTIONS") {
		r.Match.Methods = append(r.Match.Methods, "OPTIONS")
	}
}

func (v *validator) cors(p string, r *Route) {
	c := r.CORS
	p += ".cors"
	if len(c.Origins) == 0 {
		v.errorf(p+".origins", `at least one origin is required ("*" for any)`)
	}
	for i, o := range c.Origins {
		op := fmt.Sprintf("%s.origins[%d]", p, i)
		if o == "*" {
			if c.Credentials {
				v.errorf(op, `"*" cannot be combined with credentials: true (browsers refuse it, and echoing any origin with credentials lets every site act as the user)`)
			}
			continue
		}
		if !validOrigin(o) {
			v.errorf(op, "invalid origin %q (examples: https://shop.example.com, https://*.example.com, http://localhost:5173)", o)
		}
	}
	for i, m := range c.Methods {
		if !slices.Contains(StandardMethods, m) {
			v.errorf(fmt.Sprintf("%s.methods[%d]", p, i), "unsupported method %q; one of %s", m, strings.Join(StandardMethods, ", "))
		}
	}
	for i, h := range c.Headers {
		if h != "*" && !validHeaderName(h) {
			v.errorf(fmt.Sprintf("%s.headers[%d]", p, i), "invalid header name %q", h)
		}
		if h == "*" && c.Credentials {
			v.errorf(fmt.Sprintf("%s.headers[%d]", p, i), `"*" cannot be combined with credentials: true; list the headers`)
		}
	}
	for i, h := range c.ExposeHeaders {
		if !validHeaderName(h) {
			v.errorf(fmt.Sprintf("%s.expose_headers[%d]", p, i), "invalid header name %q", h)
		}
	}
	if c.MaxAge > MaxCORSMaxAge {
		v.errorf(p+".max_age", "must be at most %s, got %s", MaxCORSMaxAge.D(), c.MaxAge.D())
	}
	if c.MaxAge%Duration(1e9) != 0 {
		v.errorf(p+".max_age", "must be whole seconds, got %s", c.MaxAge.D())
	}
}

// validOrigin accepts scheme://host[:port] with an optional "*." wildcard label, and nothing after.
func validOrigin(o string) bool {
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || (scheme != "http" && scheme != "https") || rest == "" {
		return false
	}
	if strings.ContainsAny(rest, "/?#@") {
		return false
	}
	host := strings.TrimPrefix(rest, "*.")
	if strings.Contains(host, "*") {
		return false
	}
	return validHost(strings.ToLower(host)) && host == strings.ToLower(host)
}
