// Package cors is the gateway's cross-origin policy for a route: it answers preflight requests
// itself, before any other policy (authentication included: browsers send preflights without
// credentials), and adds the Access-Control-* headers to the answers of allowed origins. On a
// route with cors the gateway owns those headers; an upstream's own are removed.
package cors

import (
	"strconv"
	"strings"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/valyala/fasthttp"
)

// Error is a refused preflight: 403, so a developer with curl sees why; a browser reports a CORS
// failure either way.
type Error struct{ msg string }

func (e *Error) Error() string { return e.msg }

// Status implements proxy.StatusError.
func (e *Error) Status() (code int, closeConn bool) { return fasthttp.StatusForbidden, false }

// Reasons a preflight is refused.
var (
	ErrOriginNotAllowed = &Error{"CORS preflight refused: origin not allowed"}
	ErrMethodNotAllowed = &Error{"CORS preflight refused: method not allowed"}
	ErrHeaderNotAllowed = &Error{"CORS preflight refused: request header not allowed"}
)

var (
	hOrigin           = []byte("Origin")
	hRequestMethod    = []byte("Access-Control-Request-Method")
	hRequestHeaders   = []byte("Access-Control-Request-Headers")
	hAllowOrigin      = []byte("Access-Control-Allow-Origin")
	hAllowCredentials = []byte("Access-Control-Allow-Credentials")
	hAllowMethods     = []byte("Access-Control-Allow-Methods")
	hAllowHeaders     = []byte("Access-Control-Allow-Headers")
	hExposeHeaders    = []byte("Access-Control-Expose-Headers")
	hMaxAge           = []byte("Access-Control-Max-Age")
	vTrue             = []byte("true")
	vStar             = []byte("*")
	owned             = [][]byte{hAllowOrigin, hAllowCredentials, hAllowMethods, hAllowHeaders, hExposeHeaders, hMaxAge}
)

type wildcard struct {
	scheme []byte // "https://"
	suffix []byte // ".example.com"
}

// Policy is a compiled cors section. Immutable; safe for concurrent use.
type Policy struct {
	anyOrigin   bool
	origins     [][]byte
	wildcards   []wildcard
	credentials bool
	methods     uint32 // mask over protocol.Methods
	allowMethod []byte
	anyHeader   bool
	headers     [][]byte // lower case
	expose      []byte
	maxAge      []byte // empty: no Access-Control-Max-Age
}

// New compiles a cors section (validated by package config).
func New(c *config.CORS) *Policy {
	p := &Policy{credentials: c.Credentials}
	for _, o := range c.Origins {
		switch {
		case o == "*":
			p.anyOrigin = true
		case strings.Contains(o, "://*."):
			scheme, host, _ := strings.Cut(o, "*")
			p.wildcards = append(p.wildcards, wildcard{scheme: []byte(scheme), suffix: []byte(host)})
		default:
			p.origins = append(p.origins, []byte(o))
		}
	}
	for _, m := range c.Methods {
		if i := protocol.MethodIndex([]byte(m)); i >= 0 {
			p.methods |= 1 << uint(i)
		}
	}
	p.allowMethod = []byte(strings.Join(c.Methods, ", "))
	for _, h := range c.Headers {
		if h == "*" {
			p.anyHeader = true
			continue
		}
		p.headers = append(p.headers, []byte(strings.ToLower(h)))
	}
	p.expose = []byte(strings.Join(c.ExposeHeaders, ", "))
	if s := int64(c.MaxAge.D().Seconds()); s > 0 {
		p.maxAge = []byte(strconv.FormatInt(s, 10))
	}
	return p
}

// Middleware builds the cors policy of route, or nil when it has none. It has the shape of
// a policies.Row Middleware.
func Middleware(route *config.Route, _ *config.Config) (proxy.Middleware, error) {
	if route.CORS == nil {
		return nil, nil
	}
	p := New(route.CORS)
	return func(next proxy.Handler) proxy.Handler { return &handler{p, next} }, nil
}

type handler struct {
	p    *Policy
	next proxy.Handler
}

const optionsMethod = protocol.MethodOptions

// Serve implements proxy.Handler.
func (h *handler) Serve(x *proxy.Exchange) {
	p := h.p
	req := &x.Ctx.Request.Header
	origin := req.PeekBytes(hOrigin)
	allowed := len(origin) > 0 && p.allowsOrigin(origin)
	if len(origin) > 0 && x.Method == optionsMethod {
		if method := req.PeekBytes(hRequestMethod); len(method) > 0 {
			p.preflight(x, origin, allowed, method, req.PeekBytes(hRequestHeaders))
			return
		}
	}
	h.next.Serve(x)
	resp := &x.Ctx.Response.Header
	for _, k := range owned {
		resp.DelBytes(k)
	}
	if allowed {
		p.allowOrigin(resp, origin)
		if len(p.expose) > 0 {
			resp.SetBytesKV(hExposeHeaders, p.expose)
		}
	}
	p.vary(x)
}

// vary marks responses that depend on Origin: every one, unless any origin gets the same "*".
func (p *Policy) vary(x *proxy.Exchange) {
	if !p.anyOrigin || p.credentials || len(p.origins)+len(p.wildcards) > 0 {
		proxy.AddVary(&x.Ctx.Response.Header, hOrigin)
	}
}

func (p *Policy) allowOrigin(resp *fasthttp.ResponseHeader, origin []byte) {
	if p.anyOrigin && !p.credentials {
		resp.SetBytesKV(hAllowOrigin, vStar)
	} else {
		resp.SetBytesKV(hAllowOrigin, origin)
	}
	if p.credentials {
		resp.SetBytesKV(hAllowCredentials, vTrue)
	}
}

func (p *Policy) preflight(x *proxy.Exchange, origin []byte, allowed bool, method, headers []byte) {
	var refused *Error
	switch {
	case !allowed:
		refused = ErrOriginNotAllowed
	case !p.allowsMethod(method):
		refused = ErrMethodNotAllowed
	case !p.allowsHeaders(headers):
		refused = ErrHeaderNotAllowed
	}
	if refused != nil {
		proxy.WriteError(x, refused)
	} else {
		resp := &x.Ctx.Response
		resp.SetStatusCode(fasthttp.StatusNoContent)
		p.allowOrigin(&resp.Header, origin)
		resp.Header.SetBytesKV(hAllowMethods, p.allowMethod)
		if len(headers) > 0 {
			// Every requested header was checked; naming them back is what "*" would mean,
			// and works with credentials and with older browsers too.
			resp.Header.SetBytesKV(hAllowHeaders, headers)
		}
		if len(p.maxAge) > 0 {
			resp.Header.SetBytesKV(hMaxAge, p.maxAge)
		}
	}
	h := &x.Ctx.Response.Header
	proxy.AddVary(h, hOrigin)
	proxy.AddVary(h, hRequestMethod)
	proxy.AddVary(h, hRequestHeaders)
}

func (p *Policy) allowsOrigin(origin []byte) bool {
	if p.anyOrigin {
		return true
	}
	for _, o := range p.origins {
		if string(o) == string(origin) {
			return true
		}
	}
	for _, w := range p.wildcards {
		if len(origin) > len(w.scheme)+len(w.suffix) && string(origin[:len(w.scheme)]) == string(w.scheme) &&
			string(origin[len(origin)-len(w.suffix):]) == string(w.suffix) &&
			hostLabels(origin[len(w.scheme):len(origin)-len(w.suffix)]) {
			return true
		}
	}
	return false
}

// hostLabels reports whether b is one or more DNS labels (what "*." may stand for).
func hostLabels(b []byte) bool {
	if len(b) == 0 || b[0] == '.' || b[len(b)-1] == '.' || b[0] == '-' {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func (p *Policy) allowsMethod(m []byte) bool {
	i := protocol.MethodIndex(m)
	return i >= 0 && p.methods&(1<<uint(i)) != 0
}

// allowsHeaders checks a comma-separated Access-Control-Request-Headers value.
func (p *Policy) allowsHeaders(v []byte) bool {
	if p.anyHeader {
		return true
	}
	for len(v) > 0 {
		var tok []byte
		tok, v = protocol.NextListItem(v)
		if len(tok) > 0 && !p.allowsHeader(tok) {
			return false
		}
	}
	return true
}

func (p *Policy) allowsHeader(name []byte) bool {
	for _, h := range p.headers {
		if len(h) != len(name) {
			continue
		}
		match := true
		for i := range h {
			c := name[i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != h[i] {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}
