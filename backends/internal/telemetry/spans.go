package telemetry

import (
	"context"
	"net/http"
	"strings"

	"github.com/archway-gateway/archway/backends/internal/reqctx"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// requestHeaders lets the propagator read a fasthttp request's headers.
type requestHeaders struct{ h *fasthttp.RequestHeader }

var _ propagation.TextMapCarrier = requestHeaders{}

func (c requestHeaders) Get(key string) string { return string(c.h.Peek(key)) }
func (c requestHeaders) Set(key, value string) { c.h.Set(key, value) }
func (c requestHeaders) Keys() []string {
	var keys []string
	for k := range c.h.All() {
		keys = append(keys, string(k))
	}
	return keys
}

// StartServer continues the request's incoming trace context (traceparent) in a server span
// named after the route pattern, and keeps the span's context on the request, where
// reqctx.Detach finds it for the database and the HTTP clients. It returns nil when tracing is
// off; then only the incoming context is kept, for the log lines.
func StartServer(rc *fasthttp.RequestCtx, route string) trace.Span {
	ctx := otel.GetTextMapPropagator().Extract(context.Background(), requestHeaders{&rc.Request.Header})
	if !Enabled() {
		if trace.SpanContextFromContext(ctx).IsValid() {
			reqctx.Attach(rc, ctx)
		}
		return nil
	}
	method := string(rc.Method())
	ctx, span := Tracer().Start(ctx, method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", method),
			attribute.String("http.route", route),
			attribute.String("url.path", string(rc.Path())),
			attribute.String("url.scheme", "http"),
			attribute.String("client.address", rc.RemoteIP().String()),
			attribute.String("user_agent.original", string(rc.UserAgent())),
		))
	reqctx.Attach(rc, ctx)
	return span
}

// EndServer gives the server span its status and ends it.
func EndServer(span trace.Span, status int, err error) {
	if span == nil {
		return
	}
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetAttributes(attribute.String("error.type", http.StatusText(status)))
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		span.SetStatus(codes.Error, msg)
	}
	span.End()
}

// Transport wraps an HTTP client's transport: every request gets a client span, child of the
// request context's span, and carries its traceparent.
func Transport(next http.RoundTripper) http.RoundTripper { return transport{next} }

type transport struct{ next http.RoundTripper }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !Enabled() {
		if sc := trace.SpanContextFromContext(req.Context()); sc.IsValid() {
			req = req.Clone(req.Context())
			otel.GetTextMapPropagator().Inject(req.Context(), propagation.HeaderCarrier(req.Header))
		}
		return t.next.RoundTrip(req)
	}
	ctx, span := Tracer().Start(req.Context(), req.Method, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("http.request.method", req.Method),
			attribute.String("server.address", req.URL.Hostname()),
			attribute.String("url.full", req.URL.Scheme+"://"+req.URL.Host+req.URL.Path), // no query: it may carry secrets
		))
	defer span.End()
	req = req.Clone(ctx) // a RoundTripper must not change the caller's request
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		span.SetAttributes(attribute.String("error.type", "transport"))
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetAttributes(attribute.String("error.type", http.StatusText(resp.StatusCode)))
		span.SetStatus(codes.Error, "")
	}
	return resp, nil
}

// Start begins an internal or client span as a child of ctx's span (a fasthttp request's too).
// End it with End. When tracing is off it returns ctx and a span that records nothing.
func Start(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	ctx = reqctx.Detach(ctx)
	if !Enabled() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return Tracer().Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// End ends span, marking it failed with err when err is not nil.
func End(span trace.Span, err error) {
	if !Enabled() {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// DB starts a database client span for query on system (sqlite, postgresql): named by the
// statement's kind and table ("SELECT products"), with db.operation.name and
// db.collection.name, never the statement's text or its parameters.
func DB(ctx context.Context, system, query string) (context.Context, trace.Span) {
	ctx = reqctx.Detach(ctx)
	if !Enabled() || !trace.SpanContextFromContext(ctx).IsValid() {
		// A statement outside any request (migrations, relays polling the outbox) would be a
		// trace of its own every few milliseconds: not worth it.
		return ctx, trace.SpanFromContext(ctx)
	}
	op, table := Statement(query)
	name := op
	if table != "" {
		name += " " + table
	}
	attrs := []attribute.KeyValue{attribute.String("db.system.name", system), attribute.String("db.operation.name", op)}
	if table != "" {
		attrs = append(attrs, attribute.String("db.collection.name", table))
	}
	return Tracer().Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// Statement returns the kind of a SQL statement (SELECT, INSERT, ...) and the first table it
// names, from its text alone: good enough for a span name, never a parser.
func Statement(query string) (op, table string) {
	words := strings.Fields(query)
	if len(words) == 0 {
		return "", ""
	}
	op = strings.ToUpper(words[0])
	after := ""
	switch op {
	case "SELECT", "DELETE":
		after = "FROM"
	case "INSERT":
		after = "INTO"
	case "UPDATE":
		return op, tableName(words, 1)
	case "WITH":
		// WITH x AS (...) SELECT ...: name the operation of the main statement.
		for i, w := range words {
			if u := strings.ToUpper(w); i > 0 && (u == "SELECT" || u == "INSERT" || u == "UPDATE" || u == "DELETE") && strings.HasSuffix(words[i-1], ")") {
				o, t := Statement(strings.Join(words[i:], " "))
				return o, t
			}
		}
		return op, ""
	default:
		return op, ""
	}
	for i, w := range words {
		if strings.EqualFold(w, after) {
			return op, tableName(words, i+1)
		}
	}
	return op, ""
}

func tableName(words []string, i int) string {
	if i >= len(words) {
		return ""
	}
	t := strings.TrimRight(words[i], "(,;")
	if j := strings.IndexByte(t, '('); j >= 0 {
		t = t[:j]
	}
	return strings.Trim(t, `"`)
}

// Traceparent is the W3C traceparent of the span in ctx (this service's, or the caller's when
// this service does not trace), or "" when ctx carries none. Work that outlives the request (an
// outbox event, a message) carries it so that its consumer can join the trace later.
func Traceparent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

// WithTraceparent returns ctx carrying the remote span context of traceparent (as Traceparent
// wrote it), or ctx itself when traceparent is empty or malformed. Work done later for a
// request, such as delivering its events, logs with it, so those lines carry the request's
// trace id too.
func WithTraceparent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}
