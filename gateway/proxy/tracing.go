package proxy

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"unsafe"

	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/tracing"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

var (
	hTraceparent = []byte("Traceparent")
	hTracestate  = []byte("Tracestate")
	hXCache      = []byte("X-Cache")
)

// traceState is a request's trace context. While tracing is off it stays zero and nothing
// reads it. A request that is not sampled has ids (forwarded upstream, written to the access
// log) but no span; only a sampled one holds SDK spans, and only it allocates.
type traceState struct {
	started bool // ids chosen and traceparent decided
	skip    bool // the health path: no trace
	sampled bool
	traceID trace.TraceID
	spanID  trace.SpanID // the gateway's server span, or the id forwarded for an unsampled one
	// continued: the incoming context was trusted and this request is its child; otherwise
	// the gateway started the trace and tracestate was dropped.
	continued bool
	span      trace.Span      // the server span; nil unless sampled
	ctx       context.Context // carries span: the parent of the client spans
	attempt   trace.Span      // the client span of the attempt in flight
	// scratch is a sampled request's span options, attributes and strings from its start to
	// its end (spanScratch); nil otherwise.
	scratch *spanScratch
	header  [tracing.TraceparentLen]byte
}

// Sizes of a span's attribute arrays: every attribute the gateway sets fits.
const (
	serverAttrs = 20
	clientAttrs = 5
)

// spanScratch is where a sampled request builds what it hands to the SDK: start options and
// attributes, each span's set in one call, so that passing them allocates no slices (the SDK
// copies what it is given), and the request's strings in one allocation. One request holds it
// from startTrace to endTrace; scratchPool keeps them between requests.
type spanScratch struct {
	opts    [2]trace.SpanStartOption
	server  [serverAttrs]attribute.KeyValue
	nServer int
	client  [clientAttrs]attribute.KeyValue
	link    [1]trace.Link
	// strs holds the bytes of the request's attribute strings, copied once: the SDK keeps the
	// strings until the span is exported, long after the request's buffers are reused. It is
	// allocated per request and never written where a string points (see str).
	strs []byte
}

var scratchPool = sync.Pool{New: func() any { return new(spanScratch) }}

// The span kinds as start options, made once: each trace.WithSpanKind call allocates.
var (
	serverKind = trace.WithSpanKind(trace.SpanKindServer)
	clientKind = trace.WithSpanKind(trace.SpanKindClient)
)

// str returns p as a string backed by s.strs when it has room, else a copy of its own. The
// bytes a returned string points at are never written again: strs only grows within its
// capacity, and the next request gets a new one.
func (s *spanScratch) str(p []byte) string {
	if len(p) == 0 {
		return ""
	}
	if cap(s.strs)-len(s.strs) < len(p) {
		return string(p)
	}
	at := len(s.strs)
	s.strs = append(s.strs, p...)
	return unsafe.String(&s.strs[at], len(p))
}

// release clears what the SDK now owns copies of and returns s to the pool.
func (s *spanScratch) release() {
	clear(s.server[:])
	clear(s.client[:])
	clear(s.opts[:])
	s.link[0] = trace.Link{}
	s.nServer, s.strs = 0, nil
	scratchPool.Put(s)
}

func (s *spanScratch) addServer(kv attribute.KeyValue) {
	if s.nServer < len(s.server) {
		s.server[s.nServer] = kv
		s.nServer++
	}
}

// methodName is the request's method as the HTTP semantic conventions name it: one of the
// methods the gateway knows (a constant: no allocation), or _OTHER.
func methodName(x *Exchange) string {
	if x.Method >= 0 && x.Method < len(protocol.Methods) {
		return protocol.Methods[x.Method]
	}
	return "_OTHER"
}

// ipLen bounds the text of an address: an IPv6 address with a zone.
const ipLen = 64

// startTrace decides the request's trace: it continues a trusted incoming traceparent, or
// starts a new trace (linking the client's when it sent one), samples it with the route's
// ratio, and starts the server span when sampled. It runs once per request, once the route is
// known (or at the finish for requests that never got one). The span's start is the request's
// arrival.
func (x *Exchange) startTrace(t *tracing.Tracer) {
	ts := &x.trace
	ts.started = true
	hdr := &x.Ctx.Request.Header
	tid, sid, flags, valid := tracing.ParseTraceparent(hdr.PeekBytes(hTraceparent))
	threshold := t.Threshold()
	if x.Route != nil && x.Route.TraceSampling != nil {
		threshold = *x.Route.TraceSampling
	}
	if valid && t.Trusts(x.Peer) {
		ts.continued = true
		ts.traceID, ts.sampled = tid, flags.IsSampled()
	} else {
		// The client's tracestate belongs to its own trace, which this one is not.
		hdr.DelBytes(hTracestate)
		ts.traceID, ts.sampled = tracing.NewTraceID(), tracing.Sample(threshold)
	}
	if !ts.sampled {
		ts.spanID = tracing.NewSpanID()
		return
	}
	s := scratchPool.Get().(*spanScratch)
	ts.scratch = s
	// A context without a span starts a new trace: no WithNewRoot (and the two allocations of
	// the context it takes) is needed.
	ctx := context.Background()
	opts := append(s.opts[:0], serverKind, trace.WithTimestamp(x.Ctx.Time()))
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true})
	if ts.continued {
		ctx = trace.ContextWithRemoteSpanContext(ctx, remote)
	} else if valid {
		s.link[0] = trace.Link{SpanContext: remote}
		opts = append(opts, trace.WithLinks(s.link[:]...))
	}

	// The request's strings, in one allocation; read now, since policies rewrite the request.
	path, host, ua := x.Path, hdr.Host(), hdr.UserAgent()
	method := methodName(x)
	var original []byte
	if method == "_OTHER" {
		original = hdr.Method()
	}
	s.strs = make([]byte, 0, len(path)+len(host)+len(ua)+len(x.RequestID)+len(original)+2*ipLen+
		len(hdr.RequestURI())+16) // the first attempt's path and the cache outcome come later
	scheme := "http"
	if x.TLS() {
		scheme = "https"
	}
	var ip [ipLen]byte
	s.addServer(attribute.String("http.request.method", method))
	if original != nil {
		s.addServer(attribute.String("http.request.method_original", s.str(original)))
	}
	s.addServer(attribute.String("url.path", s.str(path)))
	s.addServer(attribute.String("url.scheme", scheme))
	s.addServer(attribute.String("server.address", s.str(host)))
	s.addServer(attribute.String("client.address", s.str(x.ClientIP.AppendTo(ip[:0]))))
	s.addServer(attribute.String("network.peer.address", s.str(x.Peer.AppendTo(ip[:0]))))
	s.addServer(attribute.String("user_agent.original", s.str(ua)))
	s.addServer(attribute.String("network.protocol.version", protocolVersion(x)))
	s.addServer(attribute.String("archway.request_id", s.str(x.RequestID)))

	name := method
	if x.Route != nil {
		name += " " + x.Route.Name
	}
	// The SDK's trace id replaces the one drawn above for a new trace; the ids reported are
	// always the span's own. The attributes are set once, at the end, with the outcome.
	ctx, span := t.SDK().Start(ctx, name, opts...)
	sc := span.SpanContext()
	ts.span, ts.ctx, ts.traceID, ts.spanID = span, ctx, sc.TraceID(), sc.SpanID()
}

func protocolVersion(x *Exchange) string {
	if x.http10 {
		return "1.0"
	}
	return "1.1"
}

// traceUpstream writes the traceparent of an upstream attempt into the request: the client
// span's for a sampled request (started here, ended by endAttempt), the gateway's own id with
// the sampled flag off otherwise. Every copy the client sent is replaced.
func (x *Exchange) traceUpstream(t *tracing.Tracer, target *upstream.Target) {
	ts := &x.trace
	if !ts.started {
		x.startTrace(t)
	}
	sid, flags := ts.spanID, trace.TraceFlags(0)
	if s := ts.scratch; ts.sampled && s != nil {
		method := methodName(x)
		opts := append(s.opts[:0], clientKind)
		_, span := t.SDK().Start(ts.ctx, method, opts...)
		s.client = [clientAttrs]attribute.KeyValue{
			attribute.String("http.request.method", method),
			attribute.String("server.address", target.Addr),
			attribute.Int("http.request.resend_count", x.Attempts-1),
			attribute.String("url.path", s.str(x.Ctx.Request.Header.RequestURI())),
		}
		ts.attempt = span
		sid, flags = span.SpanContext().SpanID(), trace.FlagsSampled
	}
	hdr := &x.Ctx.Request.Header
	hdr.DelBytes(hTraceparent)
	hdr.SetCanonical(hTraceparent, tracing.AppendTraceparent(ts.header[:0], ts.traceID, sid, flags))
}

// endAttempt ends the client span of the attempt that just returned, if one is open.
func (x *Exchange) endAttempt(code int, err error) {
	span := x.trace.attempt
	if span == nil {
		return
	}
	x.trace.attempt = nil
	s := x.trace.scratch
	if s == nil { // not reached: an attempt's span is started with the scratch in place
		span.End()
		return
	}
	if err != nil {
		s.client[4] = attribute.String("error.type", errorType(err))
		span.SetStatus(codes.Error, err.Error())
	} else {
		s.client[4] = attribute.Int("http.response.status_code", code)
		if code >= 400 {
			span.SetStatus(codes.Error, "")
		}
	}
	span.SetAttributes(s.client[:]...)
	span.End()
}

// errorType is the low-cardinality error.type of a failed attempt.
func errorType(err error) string {
	var ue *upstream.Error
	if errors.As(err, &ue) {
		return ue.Kind.String()
	}
	return "_OTHER"
}

// endTrace finishes the request's trace: it starts one for requests that ended before their
// route ran, and gives the server span its outcome.
func (x *Exchange) endTrace(t *tracing.Tracer, code int) {
	ts := &x.trace
	if ts.skip {
		return
	}
	if !ts.started {
		x.startTrace(t)
	}
	if ts.attempt != nil { // a panic between an attempt's start and end
		x.endAttempt(0, ErrBadGatewayInternal)
	}
	span, s := ts.span, ts.scratch
	if span == nil || s == nil {
		return
	}
	ts.scratch = nil
	s.addServer(attribute.Int("http.response.status_code", code))
	if r := x.Route; r != nil {
		s.addServer(attribute.String("archway.route", r.Name))
		if u := x.Upstream; u != nil {
			s.addServer(attribute.String("archway.upstream", u.Name))
		} else if r.Upstream != nil {
			s.addServer(attribute.String("archway.upstream", r.Upstream.Name))
		}
	}
	if x.Target != nil {
		s.addServer(attribute.String("archway.target", x.Target.Addr))
		s.addServer(attribute.Int("archway.attempts", x.Attempts))
		if x.Attempts > 1 {
			s.addServer(attribute.Bool("archway.retried", true))
		}
	}
	if c := x.Ctx.Response.Header.PeekBytes(hXCache); len(c) > 0 {
		s.addServer(attribute.String("archway.cache", s.str(c)))
	}
	if errors.Is(x.Err, ErrRateLimited) {
		s.addServer(attribute.String("archway.rate_limit", "limited"))
	}
	if code >= 500 {
		var b [8]byte
		s.addServer(attribute.String("error.type", s.str(strconv.AppendInt(b[:0], int64(code), 10))))
		msg := ""
		if x.Err != nil {
			msg = x.Err.Error()
		}
		span.SetStatus(codes.Error, msg)
	}
	span.SetAttributes(s.server[:s.nServer]...)
	span.End()
	s.release()
}

// Subrequest is the trace of a request the gateway makes on a request's behalf before
// proxying it (forward_auth's check): a client span, child of the request's server span, while
// the request is sampled. The zero value (tracing off, or not sampled) ends as a no-op. A value
// belongs to one request; End it once.
type Subrequest struct{ span trace.Span }

// TraceSubrequest writes into h the traceparent of a subrequest made for x to addr (host:port)
// with method, replacing any: a new client span's when x is sampled (end it with End), the
// gateway's own id with the sampled flag off otherwise. A continued trace's tracestate goes
// with it. With tracing off it does nothing.
func (x *Exchange) TraceSubrequest(h *fasthttp.RequestHeader, method []byte, addr string) Subrequest {
	if x.Snapshot == nil || x.Snapshot.Tracer == nil || x.trace.skip {
		return Subrequest{}
	}
	t := x.Snapshot.Tracer
	ts := &x.trace
	if !ts.started {
		x.startTrace(t)
	}
	var sub Subrequest
	sid, flags := ts.spanID, trace.TraceFlags(0)
	if ts.sampled {
		m := string(method)
		_, sub.span = t.SDK().Start(ts.ctx, m, clientKind, trace.WithAttributes(
			attribute.String("http.request.method", m),
			attribute.String("server.address", addr),
			attribute.String("archway.subrequest", "forward_auth"),
		))
		sid, flags = sub.span.SpanContext().SpanID(), trace.FlagsSampled
	}
	h.DelBytes(hTraceparent)
	// ts.header is free: the upstream's traceparent is written again at each attempt.
	h.SetCanonical(hTraceparent, tracing.AppendTraceparent(ts.header[:0], ts.traceID, sid, flags))
	h.DelBytes(hTracestate)
	if ts.continued {
		if v := x.Ctx.Request.Header.PeekBytes(hTracestate); len(v) > 0 {
			h.SetCanonical(hTracestate, v)
		}
	}
	return sub
}

// End gives the subrequest's span its outcome (the status, or the error that left none) and
// ends it.
func (s Subrequest) End(code int, err error) {
	if s.span == nil {
		return
	}
	if err != nil {
		s.span.SetAttributes(attribute.String("error.type", "_OTHER"))
		s.span.SetStatus(codes.Error, err.Error())
	} else {
		s.span.SetAttributes(attribute.Int("http.response.status_code", code))
		if code >= 400 { // a client span's 4xx is an error too (HTTP semantic conventions)
			s.span.SetStatus(codes.Error, "")
		}
	}
	s.span.End()
}
