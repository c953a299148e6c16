package config

import (
	"fmt"
	"path"
	"strings"
)

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

// DefaultStaticIndex is the file served for a directory when static.index is left out.
const DefaultStaticIndex = "index.html"

// DefaultStaticImmutable are the hashed-asset prefixes when static.immutable is left out: where
// Vite (the storefront's bundler) writes content-hashed files.
func DefaultStaticImmutable() []string { return []string{"/assets/"} }

func (c *Config) staticDefaults(p string, r *Route) {
	s := r.Static
	setDefault(&s.Index, DefaultStaticIndex)
	if s.Immutable == nil && !c.written(p+".static.immutable") {
		s.Immutable = DefaultStaticImmutable()
	}
	if len(r.Match.Methods) == 0 && !c.written(p+".match.methods") {
		r.Match.Methods = []string{"GET", "HEAD"}
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
