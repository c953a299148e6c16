package proxy

import (
	"errors"
	"strconv"
	"time"

	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/tracing"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
)

var (
	hTraceparent = []byte("Traceparent")
	hTracestate  = []byte("Tracestate")
	hXCache      = []byte("X-Cache")
)

// traceState is a request's trace context. While tracing is off it stays zero and nothing
// reads it. A request that is not sampled has ids (forwarded upstream, written to the access
// log) but no span; a sampled one holds the records of its open spans (tracing.Span), taken from
// the tracer's free list, the first client span inside the server span's record: no allocation
// either way.
type traceState struct {
	started bool // ids chosen and traceparent decided
	skip    bool // the health path: no trace
	sampled bool
	// recorded: the server span was ended into the export queue, so the latency exemplar may
	// point at the trace.
	recorded bool
	traceID  trace.TraceID
	spanID   trace.SpanID // the gateway's server span, or the id forwarded for an unsampled one
	// continued: the incoming context was trusted and this request is its child; otherwise
	// the gateway started the trace and tracestate was dropped.
	continued bool
	// server is the server span's record from startTrace to endTrace, attempt the client span
	// of the attempt in flight; nil unless sampled. An ended record is the exporter's (see
	// tracing.Span), so each is cleared before its End.
	server  *tracing.Span
	attempt *tracing.Span
	header  [tracing.TraceparentLen]byte
}

// methodName is the request's method as the HTTP semantic conventions name it: one of the
// methods the gateway knows (a constant: no allocation), or _OTHER.
func methodName(x *Exchange) string {
	if x.Method >= 0 && x.Method < len(protocol.Methods) {
		return protocol.Methods[x.Method]
	}
	return "_OTHER"
}

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
		ts.traceID = tracing.NewTraceID()
		ts.sampled = tracing.Sample(ts.traceID, threshold)
	}
	ts.spanID = tracing.NewSpanID()
	if !ts.sampled {
		return
	}
	s := t.StartSpan(tracing.KindServer, x.Ctx.Time())
	if s == nil {
		// Every record of the tracer is in use (the collector lags): the span is dropped and
		// counted. The trace stays sampled for the upstream, as it would after a queue drop.
		return
	}
	ts.server = s
	s.TraceID, s.SpanID = ts.traceID, ts.spanID
	if ts.continued {
		s.Parent, s.RemoteParent = sid, true
	} else if valid {
		s.LinkTraceID, s.LinkSpanID, s.LinkSampled = tid, sid, flags.IsSampled()
	}

	// The request's strings are copied into the record now: policies rewrite the request.
	method := methodName(x)
	routeName := ""
	if x.Route != nil {
		routeName = x.Route.Name
	}
	s.SetName(method, routeName)
	scheme := "http"
	if x.TLS() {
		scheme = "https"
	}
	s.AddString("http.request.method", method)
	if method == "_OTHER" {
		s.AddBytes("http.request.method_original", hdr.Method())
	}
	s.AddBytes("url.path", x.Path)
	s.AddString("url.scheme", scheme)
	s.AddBytes("server.address", hdr.Host())
	s.AddAddr("client.address", x.ClientIP)
	s.AddAddr("network.peer.address", x.Peer)
	s.AddBytes("user_agent.original", hdr.UserAgent())
	s.AddString("network.protocol.version", protocolVersion(x))
	s.AddBytes("archway.request_id", x.RequestID)
}

func protocolVersion(x *Exchange) string {
	if x.http10 {
		return "1.0"
	}
	return "1.1"
}

// startClientSpan starts a client span under the request's server span, from start. It
// returns nil, the span counted as dropped, when no record is free or the server span had none.
func (x *Exchange) startClientSpan(t *tracing.Tracer, start time.Time) *tracing.Span {
	ts := &x.trace
	if ts.server == nil {
		t.CountDropped()
		return nil
	}
	// The first client span travels in the server span's record (tracing.Span.StartChild).
	c := ts.server.StartChild(tracing.KindClient, start)
	if c == nil {
		return nil
	}
	c.TraceID, c.SpanID, c.Parent = ts.traceID, tracing.NewSpanID(), ts.spanID
	return c
}

// startSampledClientSpan is startClientSpan for a sampled request, nil otherwise.
func (x *Exchange) startSampledClientSpan(t *tracing.Tracer, start time.Time) *tracing.Span {
	if !x.trace.sampled {
		return nil
	}
	return x.startClientSpan(t, start)
}

// traceUpstream is traceUpstreamAt for an attempt that starts now.
func (x *Exchange) traceUpstream(t *tracing.Tracer, target *upstream.Target) {
	x.traceUpstreamAt(t, target, time.Now())
}

// traceUpstreamAt writes the traceparent of an upstream attempt that starts at start (the
// forwarder's own reading of the clock) into the request: the client span's for a sampled
// request (started here, ended by endAttempt or endAttemptAfter), the gateway's own id with the
// sampled flag off otherwise. Every copy the client sent is replaced.
func (x *Exchange) traceUpstreamAt(t *tracing.Tracer, target *upstream.Target, start time.Time) {
	ts := &x.trace
	if !ts.started {
		x.startTrace(t)
	}
	sid, flags := ts.spanID, trace.TraceFlags(0)
	if ts.sampled {
		flags = trace.FlagsSampled
	}
	if c := x.startSampledClientSpan(t, start); c != nil {
		method := methodName(x)
		c.SetName(method, "")
		c.AddString("http.request.method", method)
		c.AddString("server.address", target.Addr)
		c.AddInt("http.request.resend_count", int64(x.Attempts-1))
		c.AddBytes("url.path", x.Ctx.Request.Header.RequestURI())
		ts.attempt = c
		sid = c.SpanID
	}
	hdr := &x.Ctx.Request.Header
	hdr.DelBytes(hTraceparent)
	hdr.SetCanonical(hTraceparent, tracing.AppendTraceparent(ts.header[:0], ts.traceID, sid, flags))
}

// endAttempt ends the client span of the attempt that just returned, if one is open.
func (x *Exchange) endAttempt(code int, err error) {
	if c := x.trace.attempt; c != nil {
		x.endAttemptAfter(code, err, time.Since(c.Began()))
	}
}

// endAttemptAfter is endAttempt for an attempt that took took, as the forwarder measured it.
func (x *Exchange) endAttemptAfter(code int, err error, took time.Duration) {
	c := x.trace.attempt
	if c == nil {
		return
	}
	x.trace.attempt = nil
	if err != nil {
		c.AddString("error.type", errorType(err))
		c.SetStatus(tracing.StatusError, err.Error())
	} else {
		c.AddInt("http.response.status_code", int64(code))
		if code >= 400 {
			c.SetStatus(tracing.StatusError, "")
		}
	}
	c.EndAfter(took)
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
// route ran, and gives the server span its outcome. elapsed is the request's duration since
// its arrival (the span's start), as the caller measured it for the metrics.
func (x *Exchange) endTrace(t *tracing.Tracer, code int, elapsed time.Duration) {
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
	s := ts.server
	if s == nil {
		return
	}
	ts.server, ts.recorded = nil, true
	s.AddInt("http.response.status_code", int64(code))
	if r := x.Route; r != nil {
		s.AddString("archway.route", r.Name)
		if u := x.Upstream; u != nil {
			s.AddString("archway.upstream", u.Name)
		} else if r.Upstream != nil {
			s.AddString("archway.upstream", r.Upstream.Name)
		}
	}
	if x.Target != nil {
		s.AddString("archway.target", x.Target.Addr)
		s.AddInt("archway.attempts", int64(x.Attempts))
		if x.Attempts > 1 {
			s.AddBool("archway.retried", true)
		}
	}
	if c := x.Ctx.Response.Header.PeekBytes(hXCache); len(c) > 0 {
		s.AddBytes("archway.cache", c)
	}
	if errors.Is(x.Err, ErrRateLimited) {
		s.AddString("archway.rate_limit", "limited")
	}
	if code >= 500 {
		var b [8]byte
		s.AddBytes("error.type", strconv.AppendInt(b[:0], int64(code), 10))
		msg := ""
		if x.Err != nil {
			msg = x.Err.Error()
		}
		s.SetStatus(tracing.StatusError, msg)
	}
	s.EndAfter(elapsed)
}

// Subrequest is the trace of a request the gateway makes on a request's behalf before
// proxying it (forward_auth's check): a client span, child of the request's server span, while
// the request is sampled. The zero value (tracing off, or not sampled) ends as a no-op. A value
// belongs to one request; End it once.
type Subrequest struct{ span *tracing.Span }

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
		flags = trace.FlagsSampled
	}
	if c := x.startSampledClientSpan(t, time.Now()); c != nil {
		c.SetNameBytes(method)
		c.AddBytes("http.request.method", method)
		c.AddString("server.address", addr)
		c.AddString("archway.subrequest", "forward_auth")
		sub.span = c
		sid = c.SpanID
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
		s.span.AddString("error.type", "_OTHER")
		s.span.SetStatus(tracing.StatusError, err.Error())
	} else {
		s.span.AddInt("http.response.status_code", int64(code))
		if code >= 400 { // a client span's 4xx is an error too (HTTP semantic conventions)
			s.span.SetStatus(tracing.StatusError, "")
		}
	}
	s.span.End()
}
