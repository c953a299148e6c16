// Package proxy is the request path: the entry handler that checks, routes and finishes every
// request, the handler chain a route composes from its policies, and the forwarder that carries
// a request to an upstream and its response back.
//
// The path takes no locks and allocates nothing in steady state: per-request state lives in a
// pooled Exchange, the configuration in an immutable Snapshot read with one atomic load.
package proxy

import (
	"net/netip"
	"sync"
	"time"

	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/valyala/fasthttp"
)

// Exchange is one request on its way through the gateway. The entry handler takes it from a pool
// when the request arrives and returns it when the handler chain is done; nothing may keep a
// reference to it, or to the byte slices it holds, past that point. One goroutine owns it.
type Exchange struct {
	Ctx      *fasthttp.RequestCtx
	Snapshot *Snapshot
	Route    *Route // nil until routed
	// Listener is the policy of the listener the request came in on; nil for a snapshot
	// without listeners (tests that build one by hand).
	Listener *ListenerPolicy

	// Method is the index of the request method in protocol.Methods.
	Method int
	// Path is the normalised request path: what routes, limits and caches see.
	Path []byte
	// Query is the raw query string, without '?'. It is the exchange's own copy: forwarding
	// rewrites the request target in place.
	Query []byte
	// ClientIP is the client's address: the peer, or the rightmost untrusted address of
	// X-Forwarded-For when the peer is a trusted proxy.
	ClientIP netip.Addr
	// Peer is the address of the TCP peer.
	Peer netip.Addr
	// PeerTrusted reports whether Peer is in server.trusted_proxies.
	PeerTrusted bool
	// Facts is what the scan of the raw request header found.
	Facts protocol.HeaderFacts
	// RequestID is the X-Request-ID the gateway forwards and echoes.
	RequestID []byte
	// Claims are the verified claims of the request's credentials, set by an authentication
	// middleware that runs before the policies reading them (rate_limit key jwt:<claim>); nil
	// when the request carried no verified credentials.
	Claims ClaimGetter

	// Filled in by the forwarder, read by logs and metrics.
	Target           *upstream.Target
	Attempts         int
	UpstreamDuration time.Duration
	// Err is the error that produced the response, for the access log.
	Err error

	up       upstream.Exchange
	pathBuf  []byte
	queryBuf []byte
	idBuf    [32]byte
	scratch  []byte
	body     limitedBody
}

var exchangePool = sync.Pool{New: func() any {
	return &Exchange{pathBuf: make([]byte, 0, 256), scratch: make([]byte, 0, 256)}
}}

func acquireExchange(ctx *fasthttp.RequestCtx, s *Snapshot) *Exchange {
	return acquireExchangeOn(ctx, s, 0)
}

func acquireExchangeOn(ctx *fasthttp.RequestCtx, s *Snapshot, listener int) *Exchange {
	x := exchangePool.Get().(*Exchange)
	x.Ctx, x.Snapshot = ctx, s
	x.Method = -1
	if listener < len(s.Listeners) {
		x.Listener = &s.Listeners[listener]
	}
	return x
}

func releaseExchange(x *Exchange) {
	bodyBuf := x.body.buf[:0]
	*x = Exchange{pathBuf: x.pathBuf[:0], queryBuf: x.queryBuf[:0], scratch: x.scratch[:0]}
	x.body.buf = bodyBuf
	exchangePool.Put(x)
}

// ClaimGetter reads verified claims. The returned slice is valid until the exchange is released
// and must not be modified.
type ClaimGetter interface {
	Claim(name string) (value []byte, ok bool)
}

// Handler serves an Exchange: it writes x.Ctx.Response, or fails with WriteError.
type Handler interface {
	Serve(x *Exchange)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(x *Exchange)

// Serve implements Handler.
func (f HandlerFunc) Serve(x *Exchange) { f(x) }

// Middleware wraps a handler with a policy (rate limit, cache, auth, ...). A route's chain is
// composed once, when its snapshot is built.
type Middleware func(next Handler) Handler

// Chain wraps h in middlewares; the first middleware runs first.
func Chain(h Handler, middlewares ...Middleware) Handler {
	for i := len(middlewares) - 1; i >= 0; i-- {
		h = middlewares[i](h)
	}
	return h
}
