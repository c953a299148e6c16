package tracing

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP/HTTP endpoint on a loopback port that keeps the bodies it is sent and
// answers each with the next status of answers (200 once they run out).
type collector struct {
	url     string
	mu      sync.Mutex
	bodies  [][]byte
	types   []string
	answers []int
}

func startCollector(t *testing.T, answers ...int) *collector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{url: "http://" + ln.Addr().String() + "/v1/traces", answers: answers}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		code := http.StatusOK
		if len(c.answers) > 0 {
			code, c.answers = c.answers[0], c.answers[1:]
		}
		if code == http.StatusOK {
			c.bodies = append(c.bodies, body)
			c.types = append(c.types, r.Header.Get("Content-Type"))
		}
		c.mu.Unlock()
		w.WriteHeader(code)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return c
}

func (c *collector) request(t *testing.T, i int) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bodies) <= i {
		t.Fatalf("the collector has %d bodies, want %d", len(c.bodies), i+1)
	}
	if c.types[i] != "application/x-protobuf" {
		t.Errorf("content type %q", c.types[i])
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(c.bodies[i], &req); err != nil {
		t.Fatalf("body %d does not decode: %v", i, err)
	}
	// The SDK's exporter writes resources in map order: compare them in one order.
	slices.SortFunc(req.ResourceSpans, func(a, b *tracepb.ResourceSpans) int { return strings.Compare(serviceName(a), serviceName(b)) })
	return &req
}

// sampleSpans are spans with everything OTLP carries: every attribute type, long values whose
// lengths take several bytes, events, links, both statuses, a remote parent with tracestate,
// a second scope and a second resource.
func sampleSpans(t *testing.T) []sdktrace.ReadOnlySpan {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	mk := func(service string) *sdktrace.TracerProvider {
		return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec),
			sdktrace.WithResource(resource.NewWithAttributes("https://opentelemetry.io/schemas/1.26.0",
				attribute.String("service.name", service), attribute.Int("replica", 2))))
	}
	gw, other := mk("archway"), mk("elsewhere")
	start := time.Unix(1_700_000_000, 123456789)
	ts, err := trace.ParseTraceState("vendor=opaque,other=x")
	if err != nil {
		t.Fatal(err)
	}
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true})
	linked := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{8}, TraceFlags: trace.FlagsSampled, Remote: true})

	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	ctx, server := gw.Tracer("github.com/archway-gateway/archway/gateway", trace.WithInstrumentationVersion("1.2.3"),
		trace.WithInstrumentationAttributes(attribute.Bool("scoped", true))).Start(ctx, "GET orders",
		trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start),
		trace.WithLinks(trace.Link{SpanContext: linked, Attributes: []attribute.KeyValue{attribute.String("why", "client's")}}),
		trace.WithAttributes(
			attribute.String("http.request.method", "GET"), attribute.String("url.path", "/"+strings.Repeat("p", 300)),
			attribute.Int("http.response.status_code", 200), attribute.Int64("big", -1<<40), attribute.Bool("archway.retried", true),
			attribute.Float64("ratio", 0.25), attribute.StringSlice("tags", []string{"a", "", "c"}), attribute.IntSlice("ints", []int{1, -2}),
			attribute.BoolSlice("bools", []bool{true, false}), attribute.Float64Slice("floats", []float64{1.5}),
			attribute.String("empty", ""), attribute.String("huge", strings.Repeat("h", 20000)),
		))
	server.AddEvent("retry", trace.WithTimestamp(start.Add(time.Millisecond)), trace.WithAttributes(attribute.Int("attempt", 2)))
	_, client := gw.Tracer("github.com/archway-gateway/archway/gateway").Start(ctx, "GET", trace.WithSpanKind(trace.SpanKindClient))
	client.SetStatus(codes.Error, "connection refused")
	client.End(trace.WithTimestamp(start.Add(2 * time.Millisecond)))
	_, internal := gw.Tracer("other-scope").Start(ctx, "work")
	internal.SetStatus(codes.Ok, "")
	internal.End()
	server.End(trace.WithTimestamp(start.Add(3 * time.Millisecond)))
	_, lone := other.Tracer("x").Start(context.Background(), "lone", trace.WithSpanKind(trace.SpanKindConsumer))
	lone.End()
	spans := rec.Ended()
	if len(spans) != 4 {
		t.Fatalf("%d spans recorded", len(spans))
	}
	return spans
}

// TestHTTPExporterMatchesSDK: the bytes our exporter sends decode to the same
// ExportTraceServiceRequest the SDK's own OTLP/HTTP exporter sends for the same spans.
func TestHTTPExporterMatchesSDK(t *testing.T) {
	spans := sampleSpans(t)
	ctx := context.Background()

	theirs := startCollector(t)
	sdk, err := otlptrace.New(ctx, otlptracehttp.NewClient(otlptracehttp.WithEndpointURL(theirs.url)))
	if err != nil {
		t.Fatal(err)
	}
	if err := sdk.ExportSpans(ctx, spans); err != nil {
		t.Fatal(err)
	}
	_ = sdk.Shutdown(ctx)

	ours := startCollector(t)
	e := newHTTPExporter(ours.url, 5*time.Second)
	for range 2 { // the second time through the reused buffer
		if err := e.ExportSpans(ctx, spans); err != nil {
			t.Fatal(err)
		}
	}
	want := theirs.request(t, 0)
	for i := range 2 {
		got := ours.request(t, i)
		if !proto.Equal(got, want) {
			t.Fatalf("export %d differs from the SDK's:\n got  %v\n want %v", i, got, want)
		}
	}
}

func serviceName(rs *tracepb.ResourceSpans) string {
	for _, kv := range rs.GetResource().GetAttributes() {
		if kv.Key == "service.name" {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// TestHTTPExporterRetries: 503 and 429 are sent again until the collector takes the batch; a
// 400 is final; a collector that never answers ends at the context's deadline.
func TestHTTPExporterRetries(t *testing.T) {
	spans := sampleSpans(t)
	c := startCollector(t, http.StatusServiceUnavailable, http.StatusTooManyRequests)
	e := newHTTPExporter(c.url, 5*time.Second)
	if err := e.ExportSpans(context.Background(), spans); err != nil {
		t.Fatalf("after two refusals: %v", err)
	}
	c.request(t, 0)

	bad := startCollector(t, http.StatusBadRequest, http.StatusOK)
	e = newHTTPExporter(bad.url, 5*time.Second)
	if err := e.ExportSpans(context.Background(), spans); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("a 400 gave %v, want a final error", err)
	}

	gone := newHTTPExporter("http://"+freeAddr(t)+"/v1/traces", time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := gone.ExportSpans(ctx, spans); err == nil {
		t.Fatal("no collector, yet no error")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
