package proxy

import (
	"context"
	"errors"
	"strconv"

	"github.com/archway-gateway/archway/gateway/tracing"
	"github.com/archway-gateway/archway/gateway/upstream"
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
	header    [tracing.TraceparentLen]byte
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
		ts.traceID, ts.sampled = tracing.NewTraceID(), tracing.Sample(threshold)
	}
	if !ts.sampled {
		ts.spanID = tracing.NewSpanID()
		return
	}
	ctx := context.Background()
	opts := make([]trace.SpanStartOption, 0, 4)
	opts = append(opts, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(x.Ctx.Time()))
	if ts.continued {
		ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true}))
	} else {
		opts = append(opts, trace.WithNewRoot())
		if valid {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true})}))
		}
	}
	method := string(hdr.Method())
	name := method
	if x.Route != nil {
		name += " " + x.Route.Name
	}
	scheme := "http"
	if x.TLS() {
		scheme = "https"
	}
	opts = append(opts, trace.WithAttributes(
		attribute.String("http.request.method", method),
		attribute.String("url.path", string(x.Path)),
		attribute.String("url.scheme", scheme),
		attribute.String("server.address", string(hdr.Host())),
		attribute.String("client.address", x.ClientIP.String()),
		attribute.String("network.peer.address", x.Peer.String()),
		attribute.String("user_agent.original", string(hdr.UserAgent())),
		attribute.String("network.protocol.version", protocolVersion(x)),
		attribute.String("archway.request_id", string(x.RequestID)),
	))
	// The SDK's trace id replaces the one drawn above for a new trace; the ids reported are
	// always the span's own.
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
	if ts.sampled {
		_, span := t.SDK().Start(ts.ctx, string(x.Ctx.Request.Header.Method()), trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(
				attribute.String("http.request.method", string(x.Ctx.Request.Header.Method())),
				attribute.String("server.address", target.Addr),
				attribute.Int("http.request.resend_count", x.Attempts-1),
				attribute.String("url.path", string(x.Ctx.Request.Header.RequestURI())),
			))
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
	if err != nil {
		span.SetAttributes(attribute.String("error.type", errorType(err)))
		span.SetStatus(codes.Error, err.Error())
	} else {
		span.SetAttributes(attribute.Int("http.response.status_code", code))
		if code >= 400 {
			span.SetStatus(codes.Error, "")
		}
	}
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
	span := ts.span
	if span == nil {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 10)
	attrs = append(attrs, attribute.Int("http.response.status_code", code))
	if r := x.Route; r != nil {
		attrs = append(attrs, attribute.String("archway.route", r.Name))
		if u := x.Upstream; u != nil {
			attrs = append(attrs, attribute.String("archway.upstream", u.Name))
		} else if r.Upstream != nil {
			attrs = append(attrs, attribute.String("archway.upstream", r.Upstream.Name))
		}
	}
	if x.Target != nil {
		attrs = append(attrs, attribute.String("archway.target", x.Target.Addr), attribute.Int("archway.attempts", x.Attempts))
		if x.Attempts > 1 {
			attrs = append(attrs, attribute.Bool("archway.retried", true))
		}
	}
	if c := x.Ctx.Response.Header.PeekBytes(hXCache); len(c) > 0 {
		attrs = append(attrs, attribute.String("archway.cache", string(c)))
	}
	if errors.Is(x.Err, ErrRateLimited) {
		attrs = append(attrs, attribute.String("archway.rate_limit", "limited"))
	}
	if code >= 500 {
		attrs = append(attrs, attribute.String("error.type", strconv.Itoa(code)))
		msg := ""
		if x.Err != nil {
			msg = x.Err.Error()
		}
		span.SetStatus(codes.Error, msg)
	}
	span.SetAttributes(attrs...)
	span.End()
}
