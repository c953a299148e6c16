package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Redirect modes of a route.
const (
	// RedirectsRewrite maps Location, Content-Location and Refresh URLs that point at the
	// upstream (its target's address, or a path in the upstream's own namespace) back to what
	// the client requested.
	RedirectsRewrite = "rewrite"
	// RedirectsKeep passes them through unchanged.
	RedirectsKeep = "keep"
)

var redirectModes = []string{RedirectsRewrite, RedirectsKeep}

// Redirects is how a proxied route rewrites the URLs in an upstream's responses, as nginx's
// proxy_redirect, proxy_cookie_path and proxy_cookie_domain do. Written as "redirects: keep",
// "redirects: rewrite", or a mapping of these fields. Left out, Mode is rewrite on routes with
// strip_prefix or add_prefix (the only ones whose paths differ on the two sides) and keep
// elsewhere.
type Redirects struct {
	Mode string `yaml:"mode"`
	// Map are explicit replacements tried before the automatic ones: a Location (or
	// Content-Location, Refresh URL) starting with From has From replaced by To.
	Map []RewritePair `yaml:"map,omitempty"`
	// CookiePath replaces a Set-Cookie Path attribute starting with From (off when empty).
	CookiePath []RewritePair `yaml:"cookie_path,omitempty"`
	// CookieDomain replaces a Set-Cookie Domain attribute equal to From, ignoring case and a
	// leading dot (off when empty).
	CookieDomain []RewritePair `yaml:"cookie_domain,omitempty"`
}

// RewritePair replaces From with To.
type RewritePair struct {
	From string `yaml:"from"`
	To   string `yaml:"to"`
}

// decodeShort accepts the one-word form "redirects: keep".
func (r *Redirects) decodeShort(s string) error {
	if !slices.Contains(redirectModes, s) {
		return fmt.Errorf("expected rewrite, keep or a mapping, found %q%s", s, suggest(s, redirectModes))
	}
	r.Mode = s
	return nil
}

// applyRedirectDefaults turns rewriting on for proxied routes that change the path, unless the
// route says otherwise.
func (c *Config) applyRedirectDefaults() {
	for _, r := range c.Routes {
		if r.Upstream == "" {
			continue
		}
		changesPath := r.StripPrefix != "" && r.StripPrefix != "/" || r.AddPrefix != "" && r.AddPrefix != "/"
		switch {
		case r.Redirects == nil && changesPath:
			r.Redirects = &Redirects{Mode: RedirectsRewrite}
		case r.Redirects != nil && r.Redirects.Mode == "":
			r.Redirects.Mode = RedirectsRewrite
		}
	}
}

func (v *validator) redirects(p string, r *Route) {
	rd := r.Redirects
	if rd == nil {
		return
	}
	p += ".redirects"
	if r.Upstream == "" {
		v.errorf(p, "only a route that proxies (upstream) has upstream responses to rewrite")
	}
	if !slices.Contains(redirectModes, rd.Mode) {
		v.errorf(p+".mode", "must be rewrite or keep, got %q%s", rd.Mode, suggest(rd.Mode, redirectModes))
	}
	if rd.Mode == RedirectsKeep && len(rd.Map) > 0 {
		v.errorf(p+".map", "mode keep rewrites nothing; remove the map or use mode rewrite")
	}
	for i, m := range rd.Map {
		mp := fmt.Sprintf("%s.map[%d]", p, i)
		v.redirectURL(mp+".from", m.From, true)
		v.redirectURL(mp+".to", m.To, false)
	}
	for i, m := range rd.CookiePath {
		mp := fmt.Sprintf("%s.cookie_path[%d]", p, i)
		for _, f := range []struct{ name, val string }{{"from", m.From}, {"to", m.To}} {
			if !strings.HasPrefix(f.val, "/") || strings.ContainsAny(f.val, ";, \t\r\n") {
				v.errorf(mp+"."+f.name, "must be a path starting with / (no ';', ',' or spaces), got %q", f.val)
			}
		}
	}
	for i, m := range rd.CookieDomain {
		mp := fmt.Sprintf("%s.cookie_domain[%d]", p, i)
		if h := strings.TrimPrefix(strings.ToLower(m.From), "."); !validHost(h) || strings.Contains(h, ":") {
			v.errorf(mp+".from", "must be a domain name, got %q", m.From)
		}
		if h := strings.TrimPrefix(strings.ToLower(m.To), "."); m.To != "" && (!validHost(h) || strings.Contains(h, ":")) {
			v.errorf(mp+".to", "must be a domain name, or empty to drop the attribute, got %q", m.To)
		}
	}
}

// redirectURL accepts an absolute http(s) URL or a path starting with /; from may not be empty.
func (v *validator) redirectURL(path, s string, from bool) {
	if strings.ContainsAny(s, " \t\r\n\x00") {
		v.errorf(path, "contains a space or control character")
		return
	}
	if strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "//") {
		return
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		what := "an absolute http(s) URL without query, or a path starting with /"
		if !from && s == "" {
			what += " (\"/\" for the root)"
		}
		v.errorf(path, "must be %s, got %q", what, s)
	}
}
