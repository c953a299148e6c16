package api

import (
	"strings"

	"github.com/valyala/fasthttp"
)

// Forwarding headers a gateway in front of the services sets: the scheme and host the client
// used, and the path prefix it stripped before forwarding (Archway sends all three).
const (
	HeaderForwardedProto  = "X-Forwarded-Proto"
	HeaderForwardedHost   = "X-Forwarded-Host"
	HeaderForwardedPrefix = "X-Forwarded-Prefix"
)

// URL returns the URL a client uses for the service's path (which starts with '/' and may carry
// a query). Behind a gateway it is absolute, with the scheme, host and path prefix the client
// used, from X-Forwarded-Proto, X-Forwarded-Host and X-Forwarded-Prefix (the request's own
// scheme and Host stand in for a missing one); called directly, without forwarding headers, it
// is the path, behind X-Forwarded-Prefix when only that is set. Every URL a service hands out
// (Location, Link) is built here. Values that are not a plain scheme, host or path are ignored,
// so a forged header cannot change the URL's shape or break a header.
func URL(ctx *fasthttp.RequestCtx, path string) string {
	prefix := ForwardedPrefix(ctx)
	proto := firstValue(ctx.Request.Header.Peek(HeaderForwardedProto))
	host := firstValue(ctx.Request.Header.Peek(HeaderForwardedHost))
	validProto := strings.EqualFold(proto, "https") || strings.EqualFold(proto, "http")
	if !validProto && !validHost(host) {
		return prefix + path
	}
	scheme := "http"
	if ctx.IsTLS() {
		scheme = "https"
	}
	if validProto {
		scheme = strings.ToLower(proto)
	}
	if !validHost(host) {
		host = string(ctx.Host())
		if !validHost(host) {
			return prefix + path // no usable host: a path-absolute reference still resolves
		}
	}
	return scheme + "://" + host + prefix + path
}

// ForwardedPrefix is the path prefix the gateway stripped (X-Forwarded-Prefix: /api), without a
// trailing slash; "" when there is none or it is not a plain path.
func ForwardedPrefix(ctx *fasthttp.RequestCtx) string {
	p := firstValue(ctx.Request.Header.Peek(HeaderForwardedPrefix))
	if p == "" || p[0] != '/' || len(p) > 100 || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "<>\"' ?#\\%\t\r\n") {
		return ""
	}
	return strings.TrimRight(p, "/")
}

// firstValue is the first entry of a comma-separated header (the one the outermost proxy set).
func firstValue(v []byte) string {
	s := string(v)
	if i := strings.IndexByte(s, ','); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// validHost accepts host[:port] made of name, IPv4 or bracketed IPv6 characters.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '-', c == ':', c == '[', c == ']', c == '_':
		default:
			return false
		}
	}
	return true
}
