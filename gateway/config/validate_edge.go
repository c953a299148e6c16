package config

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
)

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

func (v *validator) edgePolicies(p string, r *Route) {
	if r.Static != nil {
		v.static(p, r)
	}
	if r.Auth != nil {
		v.auth(p+".auth", r.Auth)
	}
	if r.CORS != nil {
		v.cors(p+".cors", r.CORS)
	}
	if r.Compression != nil {
		v.compression(p+".compression", r.Compression)
	}
}

func (v *validator) static(p string, r *Route) {
	s := r.Static
	if s.Root == "" {
		v.errorf(p+".static.root", "required: the directory to serve")
	}
	if s.Index == "" || strings.ContainsAny(s.Index, "/\\") || s.Index == "." || s.Index == ".." {
		v.errorf(p+".static.index", "must be a file name, got %q", s.Index)
	}
	if f := s.SPAFallback; f != "" {
		clean := path.Clean("/" + f)
		if strings.HasPrefix(f, "/") || clean != "/"+f || strings.Contains(f, "\\") {
			v.errorf(p+".static.spa_fallback", "must be a clean path relative to root (e.g. index.html), got %q", f)
		}
	}
	for i, prefix := range s.Immutable {
		v.cleanPath(fmt.Sprintf("%s.static.immutable[%d]", p, i), prefix)
	}
	if r.AddPrefix != "" {
		v.errorf(p+".add_prefix", "has no meaning on a static route (point root at the directory instead)")
	}
	if !r.Headers.Request.empty() {
		v.errorf(p+".headers.request", "has no effect on a static route: nothing is forwarded")
	}
	for i, m := range r.Match.Methods {
		if m != "GET" && m != "HEAD" && m != "OPTIONS" {
			v.errorf(fmt.Sprintf("%s.match.methods[%d]", p, i), "a static route serves GET and HEAD (and OPTIONS for CORS), not %s", m)
		}
	}
}

func (o HeaderOps) empty() bool { return len(o.Set)+len(o.Add)+len(o.Remove) == 0 }

func (v *validator) auth(p string, a *Auth) {
	if a.JWT != JWTRequired && a.JWT != JWTOptional {
		v.errorf(p+".jwt", "must be required or optional, got %q%s", a.JWT, suggest(a.JWT, []string{JWTRequired, JWTOptional}))
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

func (v *validator) cors(p string, c *CORS) {
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

func (v *validator) compression(p string, z *Compression) {
	if z.Level < 1 || z.Level > 9 {
		v.errorf(p+".level", "must be between 1 (fastest) and 9 (smallest), got %d", z.Level)
	}
	if z.MaxSize < z.MinSize {
		v.errorf(p+".max_size", "must be at least min_size (%s), got %s", z.MinSize, z.MaxSize)
	}
	if z.MaxSize > MaxCompressBufferedBytes {
		v.errorf(p+".max_size", "must be at most %s (responses are buffered whole to be compressed), got %s", MaxCompressBufferedBytes, z.MaxSize)
	}
	if len(z.Types) == 0 {
		v.errorf(p+".types", "at least one media type is required")
	}
	for i, t := range z.Types {
		if !validMediaType(t) {
			v.errorf(fmt.Sprintf("%s.types[%d]", p, i), "invalid media type %q (examples: application/json, text/*)", t)
		}
	}
}

func validMediaType(t string) bool {
	typ, sub, ok := strings.Cut(t, "/")
	if !ok || typ == "" || sub == "" || typ == "*" {
		return false
	}
	return validHeaderName(typ) && (sub == "*" || validHeaderName(sub))
}
