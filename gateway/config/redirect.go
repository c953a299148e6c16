package config

import (
	"fmt"
	"slices"
	"strings"
)

// Redirect answers a route's requests with a redirect, nginx's "return 301 <url>": the route has
// no upstream. To may use the variables of RedirectVariables, e.g.
// "https://example.com$request_uri".
type Redirect struct {
	To string `yaml:"to"`
	// Status is 301, 302, 307 or 308.
	Status int `yaml:"status"`
}

// DefaultRedirectStatus is temporary on purpose: browsers keep a 301 forever, so a permanent
// redirect should be asked for.
const DefaultRedirectStatus = 302

// RedirectStatuses are the statuses a redirect may answer with.
var RedirectStatuses = []int{301, 302, 307, 308}

// RedirectVariables are the variables a redirect target may use, as nginx names them:
// $scheme (http or https), $host (the request's host, lower-cased, without port), $http_host
// (the Host header as sent, port included), $request_uri (the original path and query), $uri
// (the normalised path) and $args (the query, without '?').
var RedirectVariables = []string{"scheme", "host", "http_host", "request_uri", "uri", "args"}

// RedirectPart is one piece of a parsed redirect target: literal text, or a variable.
type RedirectPart struct {
	Literal  string
	Variable string // one of RedirectVariables; empty for a literal
}

// ParseRedirect splits a redirect target into literals and variables. "$$" is a literal '$'
// (written "$$$$" in routes.yaml, whose own expansion turns "$$" into "$").
func ParseRedirect(to string) ([]RedirectPart, error) {
	var parts []RedirectPart
	var lit strings.Builder
	for i := 0; i < len(to); i++ {
		c := to[i]
		if c != '$' {
			lit.WriteByte(c)
			continue
		}
		if i+1 < len(to) && to[i+1] == '$' {
			lit.WriteByte('$')
			i++
			continue
		}
		j := i + 1
		for j < len(to) && (to[j] == '_' || to[j] >= 'a' && to[j] <= 'z' || to[j] >= 'A' && to[j] <= 'Z' || to[j] >= '0' && to[j] <= '9') {
			j++
		}
		name := to[i+1 : j]
		if !slices.Contains(RedirectVariables, name) {
			return nil, fmt.Errorf("unknown variable $%s%s; variables are $%s", name, suggest(name, RedirectVariables), strings.Join(RedirectVariables, ", $"))
		}
		if lit.Len() > 0 {
			parts = append(parts, RedirectPart{Literal: lit.String()})
			lit.Reset()
		}
		parts = append(parts, RedirectPart{Variable: name})
		i = j - 1
	}
	if lit.Len() > 0 {
		parts = append(parts, RedirectPart{Literal: lit.String()})
	}
	return parts, nil
}

func (v *validator) redirect(p string, r *Route) {
	rd := r.Redirect
	p += ".redirect"
	if r.Upstream != "" || r.Static != nil || r.Respond != nil {
		v.errorf(p, "a redirect route answers itself; leave out upstream, static and respond")
	}
	if !slices.Contains(RedirectStatuses, rd.Status) {
		v.errorf(p+".status", "must be 301, 302, 307 or 308, got %d", rd.Status)
	}
	switch {
	case rd.To == "":
		v.errorf(p+".to", "required: where to send the client, e.g. https://example.com$request_uri")
		return
	case strings.ContainsAny(rd.To, " \t\r\n"):
		v.errorf(p+".to", "must not contain spaces or line breaks, got %q", rd.To)
		return
	case !strings.HasPrefix(rd.To, "/") && !strings.HasPrefix(rd.To, "http://") &&
		!strings.HasPrefix(rd.To, "https://") && !strings.HasPrefix(rd.To, "$scheme://"):
		v.errorf(p+".to", "must be a path (/...) or an absolute http(s) URL, got %q", rd.To)
		return
	case strings.HasPrefix(rd.To, "//"):
		v.errorf(p+".to", "a target starting with // is another host; write the scheme, got %q", rd.To)
		return
	}
	if _, err := ParseRedirect(rd.To); err != nil {
		v.errorf(p+".to", "%v", err)
	}
}

func (c *Config) redirectDefaults(_ string, r *Route) {
	setDefault(&r.Redirect.Status, DefaultRedirectStatus)
}
