package proxy

import (
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/valyala/fasthttp"
)

// RedirectPolicy rewrites the URLs an upstream puts in its response headers so they work for
// the client, as nginx's proxy_redirect, proxy_cookie_path and proxy_cookie_domain do:
//
//   - Location, Content-Location and the URL of Refresh: an explicit pair whose From starts the
//     URL has it replaced by To; otherwise, in rewrite mode, a URL at the target's own address
//     (http://<target>/...) becomes one at the address the client used (X-Forwarded-Proto and
//     X-Forwarded-Host as forwarded), and a path in the upstream's namespace is mapped back
//     through the route's prefixes: add_prefix removed, strip_prefix put back. A path that
//     already starts with strip_prefix is left alone: the upstream honoured X-Forwarded-Prefix.
//     URLs of other hosts and relative references without a leading '/' are never touched.
//   - Set-Cookie, with cookie rules: a Path starting with From, a Domain equal to From.
//
// A policy is built once per snapshot and is immutable. Applying it takes no locks and, in
// steady state, allocates nothing: new values are built in the exchange's scratch buffer.
type RedirectPolicy struct {
	auto           bool   // mode rewrite
	clientPrefix   []byte // strip_prefix: the path prefix on the client's side
	upstreamPrefix []byte // add_prefix: the path prefix on the upstream's side
	pairs          []rewritePair
	cookiePaths    []rewritePair
	cookieDomains  []rewritePair
}

type rewritePair struct{ from, to []byte }

// NewRedirectPolicy compiles a route's redirects section; strip and add are the route's
// compiled prefixes (empty, or without a trailing slash). It returns nil when the policy would
// change nothing, so a route without it pays nothing.
func NewRedirectPolicy(c *config.Redirects, strip, add []byte) *RedirectPolicy {
	if c == nil {
		return nil
	}
	p := &RedirectPolicy{auto: c.Mode == config.RedirectsRewrite, clientPrefix: strip, upstreamPrefix: add}
	if p.auto {
		for _, m := range c.Map {
			p.pairs = append(p.pairs, rewritePair{[]byte(m.From), []byte(m.To)})
		}
	}
	for _, m := range c.CookiePath {
		p.cookiePaths = append(p.cookiePaths, rewritePair{[]byte(m.From), []byte(m.To)})
	}
	for _, m := range c.CookieDomain {
		p.cookieDomains = append(p.cookieDomains, rewritePair{trimDot([]byte(m.From)), trimDot([]byte(m.To))})
	}
	if !p.auto && len(p.cookiePaths) == 0 && len(p.cookieDomains) == 0 {
		return nil
	}
	return p
}

var (
	hLocation        = []byte("Location")
	hContentLocation = []byte("Content-Location")
	hRefresh         = []byte("Refresh")
	hSetCookie       = []byte("Set-Cookie")
)

// Which of the rewritten headers a response carries, and whether any more than once.
const (
	hasLocation uint8 = 1 << iota
	hasContentLocation
	hasRefresh
	hasRepeated
)

// apply rewrites the response in x.Ctx for the request it answers.
func (p *RedirectPolicy) apply(x *Exchange) {
	h := &x.Ctx.Response.Header
	if p.auto || len(p.pairs) > 0 {
		var found uint8
		for k := range h.All() {
			var bit uint8
			switch len(k) {
			case 7:
				if protocol.EqualFold(k, "refresh") {
					bit = hasRefresh
				}
			case 8:
				if protocol.EqualFold(k, "location") {
					bit = hasLocation
				}
			case 16:
				if protocol.EqualFold(k, "content-location") {
					bit = hasContentLocation
				}
			}
			if found&bit != 0 {
				found |= hasRepeated
			}
			found |= bit
		}
		if found != 0 {
			if found&hasRepeated != 0 {
				p.rewriteRepeated(x)
			} else {
				p.rewriteOne(x, found)
			}
		}
	}
	if len(p.cookiePaths)+len(p.cookieDomains) > 0 {
		p.rewriteCookies(x)
	}
}

// rewriteOne rewrites each header of found, each present once: the common case, without
// allocating.
func (p *RedirectPolicy) rewriteOne(x *Exchange, found uint8) {
	h := &x.Ctx.Response.Header
	for _, name := range [...]struct {
		bit uint8
		key []byte
	}{{hasLocation, hLocation}, {hasContentLocation, hContentLocation}, {hasRefresh, hRefresh}} {
		if found&name.bit == 0 {
			continue
		}
		v := h.PeekBytes(name.key)
		var out []byte
		var changed bool
		if name.bit == hasRefresh {
			out, changed = p.mapRefresh(x, x.scratch[:0], v)
		} else {
			out, changed = p.mapURL(x, x.scratch[:0], v)
		}
		if changed {
			h.SetCanonical(name.key, out)
		}
		x.scratch = out[:0]
	}
}

// rewriteRepeated handles a response with one of the headers on several lines (Header.Set would
// replace only the first): every line is rewritten. Such responses are malformed for Location
// and rare for the others, so this path may allocate.
func (p *RedirectPolicy) rewriteRepeated(x *Exchange) {
	h := &x.Ctx.Response.Header
	for _, key := range [...][]byte{hLocation, hContentLocation, hRefresh} {
		var values [][]byte
		for k, v := range h.All() {
			if equalFoldBytes(k, key) {
				values = append(values, append([]byte(nil), v...))
			}
		}
		if len(values) == 0 {
			continue
		}
		h.DelBytes(key)
		for _, v := range values {
			var out []byte
			var changed bool
			if string(key) == string(hRefresh) {
				out, changed = p.mapRefresh(x, nil, v)
			} else {
				out, changed = p.mapURL(x, nil, v)
			}
			if !changed {
				out = v
			}
			h.AddBytesKV(key, out)
		}
	}
}

// mapURL appends to dst what URL u becomes for the client; changed is false when u stays as it
// is (dst then holds nothing useful).
func (p *RedirectPolicy) mapURL(x *Exchange, dst, u []byte) (out []byte, changed bool) {
	for _, m := range p.pairs {
		if hasPrefix(u, m.from) {
			dst = append(dst, m.to...)
			return append(dst, u[len(m.from):]...), true
		}
	}
	if !p.auto {
		return dst, false
	}
	if len(u) > 0 && u[0] == '/' {
		if len(u) > 1 && (u[1] == '/' || u[1] == '\\') {
			return dst, false // network-path reference: another host
		}
		return p.mapPath(dst, u)
	}
	scheme, authority, rest, ok := splitAbsolute(u)
	if !ok {
		return dst, false
	}
	req := &x.Ctx.Request.Header
	switch {
	case x.Target != nil && string(scheme) == "http" && protocol.EqualFold(authority, x.Target.Addr):
		// The upstream named its own address: the client gets the address it used.
		dst = append(dst, forwardedProto(req)...)
		dst = append(dst, "://"...)
		dst = append(dst, forwardedHost(req)...)
		ref := rest
		if len(rest) == 0 || rest[0] != '/' {
			ref = vSlash // "http://target" and "http://target?q" are at the root
		}
		if mapped, ok := p.mapPath(dst, ref); ok {
			dst = mapped
		} else {
			dst = append(dst, ref...)
		}
		if len(rest) == 0 || rest[0] != '/' {
			dst = append(dst, rest...)
		}
		return dst, true
	case len(authority) > 0 && equalFoldBytes(authority, req.Host()):
		// The upstream built a URL from the Host it was sent: the client's host, the upstream's
		// path.
		if len(rest) == 0 || rest[0] != '/' {
			return dst, false
		}
		dst = append(dst, u[:len(u)-len(rest)]...)
		return p.mapPath(dst, rest)
	}
	return dst, false
}

// mapPath appends to dst the client's path for the upstream's path-absolute reference ref (a
// path with its query and fragment). ok is false when ref is outside what the route maps: not
// under add_prefix, or already under strip_prefix.
func (p *RedirectPolicy) mapPath(dst, ref []byte) (out []byte, ok bool) {
	end := len(ref)
	for i, c := range ref {
		if c == '?' || c == '#' {
			end = i
			break
		}
	}
	path, tail := ref[:end], ref[end:]
	if len(p.clientPrefix) > 0 && underPrefix(path, p.clientPrefix) && string(p.clientPrefix) != string(p.upstreamPrefix) {
		return dst, false // already the client's path
	}
	if len(p.upstreamPrefix) > 0 {
		if !underPrefix(path, p.upstreamPrefix) {
			return dst, false
		}
		path = path[len(p.upstreamPrefix):]
	}
	if len(p.clientPrefix) == 0 && len(p.upstreamPrefix) == 0 {
		return dst, false
	}
	dst = append(dst, p.clientPrefix...)
	if len(path) == 0 && len(p.clientPrefix) == 0 {
		dst = append(dst, '/')
	}
	dst = append(dst, path...)
	return append(dst, tail...), true
}

// mapRefresh rewrites the URL of a Refresh value ("5; url=/next", quotes allowed).
func (p *RedirectPolicy) mapRefresh(x *Exchange, dst, v []byte) ([]byte, bool) {
	i := 0
	for i < len(v) && v[i] != ';' && v[i] != ',' {
		i++
	}
	if i == len(v) {
		return dst, false
	}
	i++
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	if len(v)-i >= 4 && protocol.EqualFold(v[i:i+3], "url") {
		j := i + 3
		for j < len(v) && (v[j] == ' ' || v[j] == '\t') {
			j++
		}
		if j < len(v) && v[j] == '=' {
			i = j + 1
			for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
				i++
			}
		}
	}
	end := len(v)
	if i < len(v) && (v[i] == '"' || v[i] == '\'') {
		q := v[i]
		i++
		end = i
		for end < len(v) && v[end] != q {
			end++
		}
	}
	dst = append(dst, v[:i]...)
	start := len(dst)
	mapped, changed := p.mapURL(x, dst, v[i:end])
	if !changed {
		return dst[:start], false
	}
	return append(mapped, v[end:]...), true
}

// rewriteCookies applies the cookie rules to every Set-Cookie. When one changes, all are set
// again in their order (fasthttp keeps cookies in their own list, set as a whole).
func (p *RedirectPolicy) rewriteCookies(x *Exchange) {
	h := &x.Ctx.Response.Header
	var spans [16][2]int
	var more [][2]int
	buf := x.scratch[:0]
	changedAny := false
	n := 0
	for _, v := range h.Cookies() {
		start := len(buf)
		var changed bool
		buf, changed = p.mapCookie(buf, v)
		changedAny = changedAny || changed
		if n < len(spans) {
			spans[n] = [2]int{start, len(buf)}
		} else {
			more = append(more, [2]int{start, len(buf)})
		}
		n++
	}
	x.scratch = buf[:0]
	if !changedAny {
		return
	}
	h.DelBytes(hSetCookie)
	for i := range n {
		var s [2]int
		if i < len(spans) {
			s = spans[i]
		} else {
			s = more[i-len(spans)]
		}
		h.AddBytesKV(hSetCookie, buf[s[0]:s[1]])
	}
}

// mapCookie appends Set-Cookie value v with its Path and Domain attributes rewritten.
func (p *RedirectPolicy) mapCookie(dst, v []byte) ([]byte, bool) {
	changed := false
	first := true
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ';' {
			i++
		}
		attr := trimSpace(v[:i])
		if i < len(v) {
			v = v[i+1:]
		} else {
			v = v[:0]
		}
		if first {
			dst = append(dst, attr...)
			first = false
			continue
		}
		name, val := attr, []byte(nil)
		for j, c := range attr {
			if c == '=' {
				name, val = trimSpace(attr[:j]), trimSpace(attr[j+1:])
				break
			}
		}
		switch {
		case protocol.EqualFold(name, "path"):
			for _, m := range p.cookiePaths {
				if hasPrefix(val, m.from) {
					dst = append(dst, "; "...)
					dst = append(dst, name...)
					dst = append(dst, '=')
					dst = append(dst, m.to...)
					dst = append(dst, val[len(m.from):]...)
					changed = true
					goto next
				}
			}
		case protocol.EqualFold(name, "domain"):
			for _, m := range p.cookieDomains {
				if protocol.EqualFold(trimDot(val), string(m.from)) {
					changed = true
					if len(m.to) > 0 {
						dst = append(dst, "; "...)
						dst = append(dst, name...)
						dst = append(dst, '=')
						dst = append(dst, m.to...)
					}
					goto next
				}
			}
		}
		if len(attr) > 0 {
			dst = append(dst, "; "...)
			dst = append(dst, attr...)
		}
	next:
	}
	return dst, changed
}

// splitAbsolute splits an absolute http(s) URL into its lowercased-compared scheme, its
// authority and the rest (path, query, fragment).
func splitAbsolute(u []byte) (scheme, authority, rest []byte, ok bool) {
	var n int
	switch {
	case len(u) >= 7 && protocol.EqualFold(u[:7], "http://"):
		scheme, n = vHTTP, 7
	case len(u) >= 8 && protocol.EqualFold(u[:8], "https://"):
		scheme, n = vHTTPS, 8
	default:
		return nil, nil, nil, false
	}
	end := n
	for end < len(u) && u[end] != '/' && u[end] != '?' && u[end] != '#' {
		end++
	}
	return scheme, u[n:end], u[end:], true
}

var (
	vHTTPS = []byte("https")
	vSlash = []byte("/")
)

// forwardedProto is the scheme the gateway told the upstream the client used.
func forwardedProto(req *fasthttp.RequestHeader) []byte {
	v := trimSpace(firstToken(req.PeekBytes(hXForwardedProto)))
	switch {
	case protocol.EqualFold(v, "https"):
		return vHTTPS
	default:
		return vHTTP
	}
}

// forwardedHost is the host the gateway told the upstream the client used: X-Forwarded-Host as
// forwarded (the first of a chain), or Host.
func forwardedHost(req *fasthttp.RequestHeader) []byte {
	v := trimSpace(firstToken(req.PeekBytes(hXForwardedHost)))
	if len(v) == 0 || !validAuthority(v) {
		return req.Host()
	}
	return v
}

func firstToken(v []byte) []byte {
	for i, c := range v {
		if c == ',' {
			return v[:i]
		}
	}
	return v
}

// validAuthority accepts host[:port] characters only, so a forwarded value cannot inject a
// path, userinfo or a header break into a Location.
func validAuthority(v []byte) bool {
	for _, c := range v {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '-', c == ':', c == '[', c == ']', c == '_':
		default:
			return false
		}
	}
	return true
}

// underPrefix reports whether path is prefix or continues it with a new segment.
func underPrefix(path, prefix []byte) bool {
	return hasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}

func trimDot(b []byte) []byte {
	if len(b) > 0 && b[0] == '.' {
		return b[1:]
	}
	return b
}
