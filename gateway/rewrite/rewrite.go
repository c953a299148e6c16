// Package rewrite holds the route policies that change where a request goes by its URL: rewrite
// (nginx's "rewrite <regex> <replacement>" on the path sent upstream) and redirect (nginx's
// "return 301 <url>").
package rewrite

import (
	"fmt"
	"regexp"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
)

// Rewrite replaces the path of matching requests. It is compiled once per snapshot;
// immutable, safe for concurrent use.
type Rewrite struct {
	re          *regexp.Regexp
	replacement []byte
}

// NewRewrite compiles c (RE2 syntax: matching time is linear in the path's length, whatever
// the pattern).
func NewRewrite(c *config.Rewrite) (*Rewrite, error) {
	re, err := regexp.Compile(c.Regex)
	if err != nil {
		return nil, fmt.Errorf("rewrite: %w", err)
	}
	return &Rewrite{re: re, replacement: []byte(c.Replacement)}, nil
}

// Apply returns the rewritten path and true, or path and false when the regex does not match
// it. A path that does not match costs no allocation; a rewritten one allocates its result.
func (r *Rewrite) Apply(path []byte) ([]byte, bool) {
	if !r.re.Match(path) {
		return path, false
	}
	m := r.re.FindSubmatchIndex(path)
	return r.re.Expand(make([]byte, 0, len(r.replacement)+len(path)), r.replacement, path, m), true
}

// RewriteMiddleware is the factory of the rewrite policy: nil when the route has none.
func RewriteMiddleware(route *config.Route, _ *config.Config) (proxy.Middleware, error) {
	if route.Rewrite == nil {
		return nil, nil
	}
	rw, err := NewRewrite(route.Rewrite)
	if err != nil {
		return nil, err
	}
	return func(next proxy.Handler) proxy.Handler { return &rewriteHandler{rw: rw, next: next} }, nil
}

type rewriteHandler struct {
	rw   *Rewrite
	next proxy.Handler
}

var _ proxy.Handler = (*rewriteHandler)(nil)

// Serve implements proxy.Handler. The exchange's path becomes the rewritten one: policies after
// this one, the forwarder and the access log see it, as nginx's $uri after a rewrite.
func (h *rewriteHandler) Serve(x *proxy.Exchange) {
	if p, ok := h.rw.Apply(x.Path); ok {
		x.Path = p
	}
	h.next.Serve(x)
}
