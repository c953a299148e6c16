package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/gateway/accesslog"
	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/router"
	"github.com/valyala/fasthttp"
)

// Entry is the gateway's fasthttp handler. It holds the live snapshot in one atomic pointer:
// Store publishes a new configuration, and every request loads the pointer once and uses that
// snapshot to its end. Safe for concurrent use.
type Entry struct {
	snapshot atomic.Pointer[Snapshot]
	logger   *slog.Logger
}

// NewEntry returns an entry serving s. logger receives panics and internal errors.
func NewEntry(s *Snapshot, logger *slog.Logger) *Entry {
	e := &Entry{logger: logger}
	e.snapshot.Store(s)
	return e
}

// Store publishes a new snapshot. Requests already running finish on the one they loaded.
func (e *Entry) Store(s *Snapshot) { e.snapshot.Store(s) }

// Load returns the live snapshot.
func (e *Entry) Load() *Snapshot { return e.snapshot.Load() }

var (
	http11     = []byte("HTTP/1.1")
	healthBody = []byte(`{"status":"ok"}` + "\n")
	allowAll   = strings.Join(protocol.Methods[:], ", ")
)

// Handle serves one request arriving on the first listener.
func (e *Entry) Handle(ctx *fasthttp.RequestCtx) { e.handle(ctx, 0) }

// ListenerHandler returns the handler for the listener at index i of the configuration's
// listeners; each fasthttp server gets its own, made once at start.
func (e *Entry) ListenerHandler(i int) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) { e.handle(ctx, i) }
}

func (e *Entry) handle(ctx *fasthttp.RequestCtx, listener int) {
	x := acquireExchangeOn(ctx, e.snapshot.Load(), listener)
	defer func() {
		if r := recover(); r != nil {
			e.logger.Error("panic serving request", "panic", r, "path", string(x.Path), "request_id", string(x.RequestID))
			WriteError(x, fmt.Errorf("%w: internal error", ErrBadGatewayInternal))
			e.finish(x)
		}
		releaseExchange(x)
	}()
	e.serve(x)
	e.finish(x)
	if ctx.Hijacked() {
		// The connection leaves HTTP (an upgrade): its request-head scanner stops.
		if c, ok := ctx.Conn().(*protocol.Conn); ok {
			c.Upgraded()
		}
	}
}

// ErrBadGatewayInternal marks a bug in the gateway itself (a recovered panic): 502, logged.
var ErrBadGatewayInternal = errors.New("gateway error")

func (e *Entry) serve(x *Exchange) {
	ctx := x.Ctx
	s := x.Snapshot
	hdr := &ctx.Request.Header
	raw := hdr.RawHeaders()

	x.Peer = peerAddr(ctx)
	version := protocol.ClassifyVersion(hdr.Protocol())
	err := protocol.ErrVersion
	if version != protocol.VersionUnsupported {
		err = protocol.ScanHeaders(raw, &x.Facts)
	}
	if err != nil {
		x.ClientIP = x.Peer
		WriteError(x, err)
		return
	}
	x.PeerTrusted = s.trusted(x.Peer)
	resolveClientIP(x, raw)
	ensureRequestID(x, raw)
	if x.Facts.Has(protocol.HasExpectOther) {
		WriteError(x, protocol.ErrExpectation)
		return
	}
	if version == protocol.Version10 {
		x.http10 = true
		// An intermediary sends its own version (RFC 9110, section 6.2): the upstream gets
		// HTTP/1.1. fasthttp read the client's keep-alive semantics before this handler ran,
		// so the HTTP/1.0 client still gets its close or keep-alive answer.
		hdr.SetProtocolBytes(http11)
	}

	method := hdr.Method()
	switch protocol.ClassifyMethod(method) {
	case protocol.MethodRefused:
		WriteError(x, ErrMethodRefused)
		ctx.Response.Header.Set(fasthttp.HeaderAllow, allowAll)
		return
	case protocol.MethodUnknown:
		WriteError(x, ErrNotImplemented)
		return
	}
	// An extension method (M-SEARCH, PROPFIND) gets index -1: it matches only routes that
	// allow every method and is forwarded there; elsewhere it is a 405 with Allow.
	x.Method = protocol.MethodIndex(method)

	target := hdr.RequestURI()
	var path, query []byte
	if len(target) > 0 && target[0] == '/' {
		path, query, err = protocol.SplitTarget(target)
	} else {
		path, query, err = absoluteTarget(hdr, target)
	}
	if err == nil {
		x.Path, err = protocol.NormalizePath(x.pathBuf[:0], path, s.RejectEncodedSlash)
		x.pathBuf = x.Path
	}
	if err != nil {
		WriteError(x, err)
		return
	}
	if version == protocol.Version10 && len(hdr.Host()) == 0 {
		// The upstream gets HTTP/1.1, which needs a Host. Without one the target's authority
		// is the server's own address (RFC 9112, section 3.3). Rare enough to format here.
		hdr.SetHost(ctx.LocalAddr().String())
	}
	x.queryBuf = append(x.queryBuf[:0], query...)
	x.Query = x.queryBuf

	if string(x.Path) == string(s.HealthPath) {
		x.trace.skip = true // probes every few seconds are not worth a trace
		ctx.Response.Header.SetContentType("application/json")
		ctx.Response.SetBodyRaw(healthBody)
		return
	}

	table := s.Table
	if l := x.Listener; l != nil {
		if l.RedirectHTTPS && redirectHTTPS(x, l) {
			return
		}
		if l.Table != nil {
			table = l.Table
		}
		if len(l.ClientCertHeader) > 0 {
			setClientCertHeader(x, l)
		}
	}
	route, outcome, allow := table.Match(hdr.Host(), x.Path, x.Method)
	switch outcome {
	case router.NotFound:
		WriteError(x, ErrNoRoute)
		return
	case router.MethodNotAllowed:
		WriteError(x, ErrMethodNotAllowed)
		ctx.Response.Header.Set(fasthttp.HeaderAllow, allowHeader(allow))
		return
	}
	x.Route = route
	if int64(hdr.ContentLength()) > s.MaxBodyBytes {
		// fasthttp refuses this itself only when bodies are not streamed; here they are.
		WriteError(x, ErrBodyTooLarge)
		return
	}
	if t := s.Tracer; t != nil {
		x.startTrace(t)
	}
	route.Handler.Serve(x)
}

// absoluteTarget accepts an absolute-form request target (RFC 9112, section 3.2.2) whose
// authority is the Host field, and serves it exactly as the origin-form request with that Host:
// routing, limits and caches see the same host and path, and the upstream gets origin-form. A
// request without Host (HTTP/1.0) takes the authority as its Host. An authority that differs
// from Host is refused: two hosts in one request is how caches and routes get confused.
func absoluteTarget(hdr *fasthttp.RequestHeader, target []byte) (path, query []byte, err error) {
	authority, path, query, err := protocol.SplitAbsoluteTarget(target)
	if err != nil {
		return nil, nil, err
	}
	host := hdr.Host()
	switch {
	case len(host) == 0:
		hdr.SetHostBytes(authority)
	case !equalFoldBytes(host, authority):
		return nil, nil, protocol.ErrAuthorityMismatch
	}
	return path, query, nil
}

func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

// finish completes the response (request id, security and route headers), then records metrics
// and the access log line.
func (e *Entry) finish(x *Exchange) {
	ctx := x.Ctx
	s := x.Snapshot
	resp := &ctx.Response.Header
	// The gateway's own version to the client, whatever the upstream spoke (RFC 9110,
	// section 6.2): an HTTP/1.0 upstream's status line is not relayed.
	resp.SetProtocol(nil)
	if len(x.RequestID) > 0 {
		resp.SetCanonical(hXRequestID, x.RequestID)
	}
	security := s.SecurityHeaders
	stats := s.Unmatched
	if r := x.Route; r != nil {
		security, stats = r.SecurityHeaders, r.Stats
		if !r.ResponseHeaders.Empty() {
			applyResponseOps(resp, &r.ResponseHeaders)
		}
	}
	switch {
	case len(security) == 0:
		// None to add (server.security_headers: {}): no pass over the response's fields.
	case len(security) <= 64:
		present := securityPresent(resp, security)
		for i := range security {
			if present&(1<<i) == 0 {
				resp.SetCanonical(security[i].Key, security[i].Value)
			}
		}
	default:
		for i := range security {
			if len(resp.PeekBytes(security[i].Key)) == 0 {
				resp.SetCanonical(security[i].Key, security[i].Value)
			}
		}
	}

	if l := x.Listener; l != nil && len(l.HSTS) > 0 && len(resp.PeekBytes(hStrictTransportSecurity)) == 0 {
		resp.SetCanonical(hStrictTransportSecurity, l.HSTS)
	}

	code := resp.StatusCode()
	elapsed := time.Since(ctx.Time())
	in := int64(max(ctx.Request.Header.ContentLength(), 0))
	out := int64(max(resp.ContentLength(), 0))
	if t := s.Tracer; t != nil {
		x.endTrace(t, code, elapsed)
	}
	if x.trace.recorded {
		// The latency histogram's exemplar points at this trace, so a dashboard can jump from
		// a slow bucket to a request in it.
		stats.RecordTraced(x.Wire, x.Method, code, elapsed, x.UpstreamDuration, in, out, x.trace.traceID)
	} else {
		stats.Record(x.Wire, x.Method, code, elapsed, x.UpstreamDuration, in, out)
	}
	if x.GRPCAnswered {
		stats.RecordGRPCError(x.GRPCStatus)
	}

	if s.AccessLog != nil {
		logRequest(s.AccessLog, x, code, elapsed, in, out)
	}
}

// securityPresent reports, bit i for security[i] (at most 64), which security headers the
// response already carries with a value; the first copy of a name decides, as PeekBytes would.
// One pass over the response headers replaces a lookup per security header, each of which
// copied and normalised the name (bench: 1.1 % of the gateway's CPU proxying a GET). Names on
// both sides are canonical: fasthttp normalises the ones it parses, snapshots canonicalise
// configured ones.
func securityPresent(h *fasthttp.ResponseHeader, security []KV) (present uint64) {
	var seen uint64
	for k, v := range h.All() {
		for i := range security {
			if seen&(1<<i) == 0 && string(k) == string(security[i].Key) {
				seen |= 1 << i
				if len(v) > 0 {
					present |= 1 << i
				}
			}
		}
	}
	return present
}

func logRequest(l *accesslog.Logger, x *Exchange, code int, elapsed time.Duration, in, out int64) {
	hdr := &x.Ctx.Request.Header
	e := accesslog.Entry{
		RequestID: x.RequestID, ClientIP: x.ClientIP, Method: hdr.Method(), Path: x.Path,
		Query: x.Query, Status: code, BytesIn: in, BytesOut: out, Duration: elapsed,
		UpstreamTime: x.UpstreamDuration, Attempts: x.Attempts, UserAgent: hdr.UserAgent(),
		Referer: hdr.Referer(), Err: x.Err, Protocol: x.Wire.String(),
		GRPCStatus: x.GRPCStatus, HasGRPCStatus: x.GRPCAnswered,
	}
	if x.Route != nil {
		e.Route = x.Route.Name
		if x.Upstream != nil { // a split chose it
			e.Upstream = x.Upstream.Name
		} else if x.Route.Upstream != nil { // nil on a static route
			e.Upstream = x.Route.Upstream.Name
		}
	}
	if x.Target != nil {
		e.Target = x.Target.Addr
	}
	if len(e.Path) == 0 {
		e.Path = hdr.RequestURI()
	}
	if x.trace.started && !x.trace.skip {
		e.TraceID, e.SpanID, e.Traced = [16]byte(x.trace.traceID), [8]byte(x.trace.spanID), true
	}
	l.Log(&e)
}

// allowHeaders holds the Allow header value for every set of methods, built once.
var allowHeaders = func() (t [1 << len(protocol.Methods)]string) {
	for mask := range t {
		t[mask] = buildAllowHeader(uint32(mask))
	}
	return t
}()

func allowHeader(mask uint32) string { return allowHeaders[mask&(1<<len(protocol.Methods)-1)] }

func buildAllowHeader(mask uint32) string {
	var b strings.Builder
	for i, m := range protocol.Methods {
		if mask&(1<<uint(i)) != 0 {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(m)
		}
	}
	return b.String()
}

func peerAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.IPv4Unspecified()
}

// HandleExpect decides a request carrying "Expect: 100-continue" before its body is read: a
// declared body over server.max_body_bytes is refused with 413 at once, so the client never
// sends it; anything else continues.
func (e *Entry) HandleExpect(ctx *fasthttp.RequestCtx) int {
	s := e.snapshot.Load()
	if int64(ctx.Request.Header.ContentLength()) <= s.MaxBodyBytes {
		return fasthttp.StatusContinue
	}
	x := acquireExchange(ctx, s)
	defer releaseExchange(x)
	x.Peer = peerAddr(ctx)
	x.ClientIP = x.Peer
	x.Method = protocol.MethodIndex(ctx.Method())
	ensureRequestID(x, nil)
	WriteError(x, ErrBodyTooLarge)
	e.finish(x)
	return fasthttp.StatusRequestEntityTooLarge
}

// HandleParseError answers requests fasthttp could not parse: a header block over
// server.max_header_bytes (431, or 414 when the request line alone does not fit), a body over
// the limit (413), a head not received within server.read_timeout (408), a bare LF in the head
// or malformed framing (400). The
// connection is closed: what follows on it cannot be trusted to start a new request.
func (e *Entry) HandleParseError(ctx *fasthttp.RequestCtx, err error) {
	s := e.snapshot.Load()
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	var cause error
	switch {
	case errors.As(err, &small):
		cause = ErrHeaderTooLarge
		if c, ok := ctx.Conn().(*protocol.Conn); ok && c.InRequestLine() {
			cause = ErrURITooLong
		}
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		cause = ErrBodyTooLarge
	case errors.Is(err, protocol.ErrBareLF):
		cause = protocol.ErrBareLF
	case errors.As(err, &ne) && ne.Timeout():
		// The head did not arrive within server.read_timeout.
		cause = fmt.Errorf("%w: %v", ErrRequestTimeout, err)
	default:
		cause = fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	x := acquireExchange(ctx, s)
	defer releaseExchange(x)
	x.Peer = peerAddr(ctx)
	x.ClientIP = x.Peer
	x.Method = -1
	ensureRequestID(x, nil)
	WriteError(x, cause)
	ctx.Response.SetConnectionClose()
	e.finish(x)
}
