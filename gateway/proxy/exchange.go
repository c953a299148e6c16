// Package proxy is the request path: the entry handler that checks, routes and finishes every
// request, the handler chain a route composes from its policies, and the forwarder that carries
// a request to an upstream and its response back.
//
// The path takes no locks and allocates nothing in steady state: per-request state lives in a
// pooled Exchange, the configuration in an immutable Snapshot read with one atomic load.
package proxy

import (
	"net/netip"
	"strconv"
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
	// Upstream, when set by a policy before the forwarder (a split), replaces the route's
	// upstream for this request.
	Upstream *upstream.Upstream

	// Filled in by the forwarder, read by logs and metrics.
	Target           *upstream.Target
	Attempts         int
	UpstreamDuration time.Duration
	// Err is the error that produced the response, for the access log.
	Err error
	// GRPCStatus is the gRPC status the gateway answered a gRPC call with itself (WriteError:
	// HTTP 200, the status in the head), when GRPCAnswered: the access log and
	// archway_grpc_errors_total record it, since the HTTP status alone says 200.
	GRPCStatus   int
	GRPCAnswered bool
	// Wire is the protocol the request arrived in (HTTP/2 streams come through package h2).
	Wire protocol.Wire

	up        upstream.RoundTrip
	http10    bool // the client spoke HTTP/1.0: no interim responses (RFC 9110, section 15.2)
	interim   []byte
	onInterim func(h *fasthttp.ResponseHeader) // forwardInterim bound to this exchange, made once
	pathBuf   []byte
	queryBuf  []byte
	idBuf     [32]byte
	scratch   []byte
	body      limitedBody
	trace     traceState // zero while tracing is off (tracing.go)
}

var exchangePool = sync.Pool{New: func() any {
	x := &Exchange{pathBuf: make([]byte, 0, 256), scratch: make([]byte, 0, 256)}
	x.onInterim = x.forwardInterim
	return x
}}

func acquireExchange(ctx *fasthttp.RequestCtx, s *Snapshot) *Exchange {
	return acquireExchangeOn(ctx, s, 0)
}

func acquireExchangeOn(ctx *fasthttp.RequestCtx, s *Snapshot, listener int) *Exchange {
	x := exchangePool.Get().(*Exchange)
	x.Ctx, x.Snapshot = ctx, s
	x.Method = -1
	x.up.Informational = x.onInterim
	if listener < len(s.Listeners) {
		x.Listener = &s.Listeners[listener]
	}
	if ctx != nil && isStream(ctx) {
		x.Wire = protocol.WireHTTP2
	}
	return x
}

// streamConn is the connection of a request that is an HTTP/2 stream (package h2): its bytes are
// frames, so an interim response is sent through the stream, never written to it.
type streamConn interface {
	HTTP2() bool
	WriteInterim(h *fasthttp.ResponseHeader)
}

func releaseExchange(x *Exchange) {
	bodyBuf := x.body.buf[:0]
	*x = Exchange{pathBuf: x.pathBuf[:0], queryBuf: x.queryBuf[:0], scratch: x.scratch[:0],
		interim: x.interim[:0], onInterim: x.onInterim}
	x.body.buf = bodyBuf
	exchangePool.Put(x)
}

// forwardInterim passes an upstream's interim response (103 Early Hints, 102 Processing) on to
// the client as it arrives, ahead of the final response, without its hop-by-hop fields. fasthttp
// has flushed everything before this request (ReduceMemoryUsage flushes after every response),
// so writing to the connection directly keeps the order. An HTTP/1.0 client gets none.
// TLS reports whether the client's connection to the gateway is TLS. Ask the listener, not
// fasthttp's RequestCtx.IsTLS: the connection fasthttp holds is wrapped (the request head
// check), so it no longer looks like a *tls.Conn.
func (x *Exchange) TLS() bool { return x.Listener != nil && x.Listener.TLS }

func (x *Exchange) forwardInterim(h *fasthttp.ResponseHeader) {
	if x.http10 || x.Ctx == nil {
		return
	}
	if s, ok := x.Ctx.Conn().(streamConn); ok {
		s.WriteInterim(h)
		return
	}
	code := h.StatusCode()
	b := append(x.interim[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, fasthttp.StatusMessage(code)...)
	b = append(b, "\r\n"...)
	var named [4][]byte // Connection values: the fields they name are hop-by-hop too
	n := 0
	for k, v := range h.All() {
		if n < len(named) && protocol.EqualFold(k, "connection") {
			named[n] = v
			n++
		}
	}
	for k, v := range h.All() {
		if interimSkips(k) || connectionNames(named[:n], k) {
			continue
		}
		b = append(b, k...)
		b = append(b, ": "...)
		b = append(b, v...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	x.interim = b
	c := x.Ctx.Conn()
	if cfg := x.Snapshot.Config; cfg != nil && cfg.Server.WriteTimeout.D() > 0 {
		_ = c.SetWriteDeadline(time.Now().Add(cfg.Server.WriteTimeout.D()))
	}
	// A failed write means the client is gone; the final response's write finds that out.
	_, _ = c.Write(b)
}

// connectionNames reports whether one of the Connection values lists the field name k.
func connectionNames(values [][]byte, k []byte) bool {
	for _, v := range values {
		for len(v) > 0 {
			i := 0
			for i < len(v) && v[i] != ',' {
				i++
			}
			token := v[:i]
			for len(token) > 0 && (token[0] == ' ' || token[0] == '\t') {
				token = token[1:]
			}
			for len(token) > 0 && (token[len(token)-1] == ' ' || token[len(token)-1] == '\t') {
				token = token[:len(token)-1]
			}
			if equalFoldBytes(token, k) {
				return true
			}
			if i == len(v) {
				break
			}
			v = v[i+1:]
		}
	}
	return false
}

// interimSkips reports fields an interim response does not carry on: hop-by-hop fields and
// framing, which belong to the upstream connection.
func interimSkips(k []byte) bool {
	switch len(k) {
	case 2:
		return protocol.EqualFold(k, "te")
	case 7:
		return protocol.EqualFold(k, "trailer") || protocol.EqualFold(k, "upgrade")
	case 10:
		return protocol.EqualFold(k, "connection") || protocol.EqualFold(k, "keep-alive")
	case 12:
		return protocol.EqualFold(k, "content-type")
	case 14:
		return protocol.EqualFold(k, "content-length")
	case 17:
		return protocol.EqualFold(k, "transfer-encoding")
	}
	return len(k) >= 5 && protocol.EqualFold(k[:5], "proxy")
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

func isStream(ctx *fasthttp.RequestCtx) bool {
	_, ok := ctx.Conn().(streamConn)
	return ok
}
