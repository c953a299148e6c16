package rewrite

import (
	"bytes"
	"fmt"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/valyala/fasthttp"
)

// variable is a redirect target variable, resolved per request.
type variable uint8

const (
	literal variable = iota
	varScheme
	varHost
	varHTTPHost
	varRequestURI
	varURI
	varArgs
)

var variables = map[string]variable{
	"scheme": varScheme, "host": varHost, "http_host": varHTTPHost, "request_uri": varRequestURI, "uri": varURI, "args": varArgs,
}

type part struct {
	v   variable
	lit []byte
}

// Redirect answers every request of its route with a redirect to a target built from the
// request. Immutable; safe for concurrent use.
type Redirect struct {
	parts  []part
	status int
	size   int // the literal bytes, a first guess of the Location's length
}

// NewRedirect compiles c.
func NewRedirect(c *config.Redirect) (*Redirect, error) {
	parsed, err := config.ParseRedirect(c.To)
	if err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	r := &Redirect{status: c.Status}
	for _, p := range parsed {
		if p.Variable == "" {
			r.parts = append(r.parts, part{lit: []byte(p.Literal)})
			r.size += len(p.Literal)
			continue
		}
		v, ok := variables[p.Variable]
		if !ok {
			return nil, fmt.Errorf("redirect: unknown variable $%s", p.Variable)
		}
		r.parts = append(r.parts, part{v: v})
	}
	return r, nil
}

var (
	hXForwardedProto = []byte("X-Forwarded-Proto")
	schemeHTTP       = []byte("http")
	schemeHTTPS      = []byte("https")
)

// AppendLocation appends the redirect target for x's request to dst.
func (r *Redirect) AppendLocation(dst []byte, x *proxy.Exchange) []byte {
	hdr := &x.Ctx.Request.Header
	for _, p := range r.parts {
		switch p.v {
		case literal:
			dst = append(dst, p.lit...)
		case varScheme:
			dst = append(dst, scheme(x)...)
		case varHost:
			dst = appendHost(dst, hdr.Host())
		case varHTTPHost:
			dst = append(dst, hdr.Host()...)
		case varRequestURI:
			dst = append(dst, hdr.RequestURI()...)
		case varURI:
			dst = append(dst, x.Path...)
		case varArgs:
			dst = append(dst, x.Query...)
		}
	}
	return dst
}

// scheme is the scheme the client used: https on a TLS connection, or what a trusted proxy
// says in X-Forwarded-Proto; http otherwise.
func scheme(x *proxy.Exchange) []byte {
	if x.TLS() {
		return schemeHTTPS
	}
	if x.PeerTrusted {
		v := x.Ctx.Request.Header.PeekBytes(hXForwardedProto)
		if i := bytes.IndexByte(v, ','); i >= 0 {
			v = v[:i] // the first proxy's view is the client's
		}
		if bytes.EqualFold(bytes.TrimSpace(v), schemeHTTPS) {
			return schemeHTTPS
		}
	}
	return schemeHTTP
}

// appendHost appends host lower-cased and without its port, as nginx's $host.
func appendHost(dst, host []byte) []byte {
	end := len(host)
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && bytes.IndexByte(host[i:], ']') < 0 {
		end = i
	}
	for _, c := range host[:end] {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// RedirectHandler builds the handler of a redirect route, nil when the route has none: it
// answers in place of the forwarder (a redirect route has no upstream), inside the route's
// other policies (an access list applies to a redirect too).
func RedirectHandler(route *config.Route, _ *config.Config) (proxy.Handler, error) {
	if route.Redirect == nil {
		return nil, nil
	}
	return NewRedirect(route.Redirect)
}

var _ proxy.Handler = (*Redirect)(nil)

// Serve implements proxy.Handler.
func (r *Redirect) Serve(x *proxy.Exchange) {
	var buf [256]byte
	loc := r.AppendLocation(buf[:0], x)
	resp := &x.Ctx.Response
	resp.SetStatusCode(r.status)
	resp.Header.SetBytesV(fasthttp.HeaderLocation, loc)
	resp.ResetBody()
}
