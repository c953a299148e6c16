// Package forwardauth is the forward_auth policy of a route, nginx's auth_request and Traefik's
// ForwardAuth: before a request is forwarded, the gateway asks an auth service about it. The
// subrequest carries the request's method, the configured request headers (Authorization and
// Cookie by default) and X-Forwarded-Method, -Proto, -Host, -Uri and -For; it has no body.
//
//   - 2xx: the request goes on, with the configured response headers (X-User-Id) copied onto it.
//     Client-sent copies of those headers are removed first, always, so a client cannot claim
//     an identity the auth service did not give.
//   - 3xx and 4xx: the auth service's answer (status, headers, body) goes back to the client: a
//     401 with WWW-Authenticate, a 403, a redirect to a login page.
//   - 5xx, a refused connection, a timeout: the auth service is down. on_error: deny answers 503;
//     allow lets the request through without identity headers.
package forwardauth

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/valyala/fasthttp"
)

// ErrUnavailable: the auth service could not answer and the route says on_error: deny (503).
var ErrUnavailable error = unavailableError{}

type unavailableError struct{}

func (unavailableError) Error() string              { return "auth service unavailable" }
func (unavailableError) Status() (code int, _ bool) { return fasthttp.StatusServiceUnavailable, false }

var _ proxy.StatusError = unavailableError{}

// maxAuthBodyBytes bounds an auth service's answer; a denial is a short message.
const maxAuthBodyBytes = 64 << 10

// Registry owns the HTTP client every forward_auth route shares, across reloads: one pool of
// connections per auth service. Create it with the gateway and Close it after the gateway shut
// down. Safe for concurrent use.
type Registry struct {
	client *fasthttp.Client
}

// NewRegistry returns a registry with an idle pool; connections are dialled on demand.
func NewRegistry() *Registry {
	return &Registry{client: &fasthttp.Client{
		Name:                     "archway-forward-auth",
		NoDefaultUserAgentHeader: true,
		MaxResponseBodySize:      maxAuthBodyBytes,
		MaxIdleConnDuration:      30 * time.Second,
		DisablePathNormalizing:   true, // the configured URL is sent as written
		// Timeouts per call come from the route (DoDeadline); these bound a stuck socket.
		ReadTimeout:  time.Minute,
		WriteTimeout: time.Minute,
	}}
}

// Close drops the idle connections to auth services.
func (m *Registry) Close() { m.client.CloseIdleConnections() }

// Middleware is the factory of the forward_auth policy: nil when the route has none.
func (m *Registry) Middleware(route *config.Route, _ *config.Config) (proxy.Middleware, error) {
	fa := route.ForwardAuth
	if fa == nil {
		return nil, nil
	}
	c := &Check{
		client:   m.client,
		url:      fa.URL,
		addr:     hostPort(fa.URL),
		timeout:  fa.Timeout.D(),
		failOpen: fa.OnError == config.AuthOnErrorAllow,
	}
	for _, h := range fa.RequestHeaders {
		c.requestHeaders = append(c.requestHeaders, []byte(http.CanonicalHeaderKey(h)))
	}
	for _, h := range fa.ResponseHeaders {
		c.responseHeaders = append(c.responseHeaders, []byte(http.CanonicalHeaderKey(h)))
	}
	if fa.CacheTTL > 0 {
		c.cache = newDecisionCache(fa.CacheTTL.D(), fa.CacheMaxEntries)
	}
	return func(next proxy.Handler) proxy.Handler { return &handler{check: c, next: next} }, nil
}

// hostPort is the host:port of the auth service's URL (validated by config), for the
// server.address of its trace span.
func hostPort(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

// Check is one route's forward_auth. Immutable except for its cache; safe for concurrent use.
type Check struct {
	client          *fasthttp.Client
	url             string
	addr            string // the auth service's host:port, for its trace span
	timeout         time.Duration
	failOpen        bool
	requestHeaders  [][]byte
	responseHeaders [][]byte
	cache           *decisionCache // nil without cache_ttl
}

type handler struct {
	check *Check
	next  proxy.Handler
}

var _ proxy.Handler = (*handler)(nil)

var (
	hXForwardedMethod = []byte("X-Forwarded-Method")
	hXForwardedProto  = []byte("X-Forwarded-Proto")
	hXForwardedHost   = []byte("X-Forwarded-Host")
	hXForwardedURI    = []byte("X-Forwarded-Uri")
	hXForwardedFor    = []byte("X-Forwarded-For")
	vHTTP             = []byte("http")
)

// Serve implements proxy.Handler.
func (h *handler) Serve(x *proxy.Exchange) {
	c := h.check
	reqHdr := &x.Ctx.Request.Header

	var keyBuf [256]byte
	var key []byte
	if c.cache != nil {
		key = c.cacheKey(keyBuf[:0], reqHdr)
		if values, ok := c.cache.get(key, time.Now()); ok {
			c.stripClaimed(reqHdr)
			for i, v := range values {
				if v != nil {
					reqHdr.SetCanonical(c.responseHeaders[i], v)
				}
			}
			h.next.Serve(x)
			return
		}
	}

	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	c.buildSubrequest(req, x)
	sub := x.TraceSubrequest(&req.Header, req.Header.Method(), c.addr)
	err := c.client.DoDeadline(req, resp, time.Now().Add(c.timeout))
	code := resp.StatusCode()
	sub.End(code, err)
	switch {
	case err != nil || code >= 500 || code < 200:
		if !c.failOpen {
			proxy.WriteError(x, ErrUnavailable)
			return
		}
		c.stripClaimed(reqHdr)
	case code < 300:
		c.stripClaimed(reqHdr)
		var values [][]byte
		if c.cache != nil {
			values = make([][]byte, len(c.responseHeaders))
		}
		for i, name := range c.responseHeaders {
			if v := resp.Header.PeekBytes(name); v != nil {
				reqHdr.SetCanonical(name, v)
				if values != nil {
					values[i] = bytes.Clone(v)
				}
			}
		}
		if c.cache != nil {
			c.cache.put(key, values, time.Now())
		}
	default:
		relay(&x.Ctx.Response, resp)
		x.Err = errDenied
		return
	}
	h.next.Serve(x)
}

// errDenied marks, for the access log, a request the auth service turned away.
var errDenied = errors.New("denied by the auth service")

// stripClaimed removes every client-sent copy of the headers the auth service vouches for.
func (c *Check) stripClaimed(h *fasthttp.RequestHeader) {
	for _, name := range c.responseHeaders {
		h.DelBytes(name)
	}
}

func (c *Check) buildSubrequest(req *fasthttp.Request, x *proxy.Exchange) {
	in := &x.Ctx.Request.Header
	req.SetRequestURI(c.url)
	req.Header.SetMethodBytes(in.Method())
	for _, name := range c.requestHeaders {
		if v := in.PeekBytes(name); len(v) > 0 {
			req.Header.SetCanonical(name, v)
		}
	}
	req.Header.SetCanonical(hXForwardedMethod, in.Method())
	proto := vHTTP
	if x.PeerTrusted {
		if v := in.PeekBytes(hXForwardedProto); len(v) > 0 {
			proto = v
		}
	}
	req.Header.SetCanonical(hXForwardedProto, proto)
	req.Header.SetCanonical(hXForwardedHost, in.Host())
	req.Header.SetCanonical(hXForwardedURI, in.RequestURI())
	var ip [64]byte
	req.Header.SetCanonical(hXForwardedFor, x.ClientIP.AppendTo(ip[:0]))
}

// relay copies the auth service's refusal to the client's response, without the headers that
// describe the auth service's connection or its own server (the client's response gets the
// gateway's framing).
func relay(dst, src *fasthttp.Response) {
	dst.Reset()
	dst.SetStatusCode(src.StatusCode())
	for k, v := range src.Header.All() {
		if notRelayed(k) {
			continue
		}
		dst.Header.AddBytesKV(k, v)
	}
	dst.SetBody(src.Body())
}

func notRelayed(k []byte) bool {
	switch string(k) {
	case fasthttp.HeaderContentLength, fasthttp.HeaderConnection, "Keep-Alive", fasthttp.HeaderTransferEncoding,
		fasthttp.HeaderTrailer, fasthttp.HeaderUpgrade, "Proxy-Connection", fasthttp.HeaderTE, fasthttp.HeaderServer, fasthttp.HeaderDate:
		return true
	}
	return false
}

// cacheKey is the credential: the values of the request headers the subrequest carries.
func (c *Check) cacheKey(dst []byte, h *fasthttp.RequestHeader) []byte {
	for _, name := range c.requestHeaders {
		dst = append(dst, h.PeekBytes(name)...)
		dst = append(dst, 0)
	}
	return dst
}
