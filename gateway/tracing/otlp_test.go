package tracing

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP/HTTP endpoint on a loopback port that keeps the requests it is sent
// and answers each with the next status of answers (200 once they run out).
type collector struct {
	url     string
	mu      sync.Mutex
	bodies  [][]byte
	headers []http.Header
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
		var body []byte
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body, _ = io.ReadAll(zr)
		} else {
			body, _ = io.ReadAll(r.Body)
		}
		c.mu.Lock()
		code := http.StatusOK
		if len(c.answers) > 0 {
			code, c.answers = c.answers[0], c.answers[1:]
		}
		if code == http.StatusOK {
			c.bodies = append(c.bodies, body)
			c.headers = append(c.headers, r.Header.Clone())
		}
		c.mu.Unlock()
		w.WriteHeader(code)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return c
}

// request decodes the ith request the collector took.
func (c *collector) request(t *testing.T, i int) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bodies) <= i {
		t.Fatalf("the collector has %d bodies, want %d", len(c.bodies), i+1)
	}
	if ct := c.headers[i].Get("Content-Type"); ct != "application/x-protobuf" {
		t.Errorf("content type %q", ct)
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(c.bodies[i], &req); err != nil {
		t.Fatalf("body %d does not decode: %v", i, err)
	}
	return &req
}

// grpcCollector is an OTLP/gRPC endpoint, a grpc-go server on a loopback port with the
// collector's TraceService, that keeps the requests it is sent and answers each with the next
// code of answers (OK once they run out).
type grpcCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	addr    string
	mu      sync.Mutex
	reqs    []*coltracepb.ExportTraceServiceRequest
	md      []metadata.MD
	answers []codes.Code
}

func startGRPCCollector(t *testing.T, answers ...codes.Code) *grpcCollector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &grpcCollector{addr: ln.Addr().String(), answers: answers}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return c
}

func (c *grpcCollector) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.answers) > 0 {
		code := c.answers[0]
		c.answers = c.answers[1:]
		if code != codes.OK {
			return nil, status.Error(code, "refused")
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	c.reqs = append(c.reqs, req)
	c.md = append(c.md, md)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (c *grpcCollector) request(t *testing.T, i int) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.reqs) <= i {
		t.Fatalf("the collector has %d requests, want %d", len(c.reqs), i+1)
	}
	return c.reqs[i]
}

var sampleStart = time.Unix(1_700_000_000, 123456789)

// sampleRecords are span records with everything the gateway's records carry: every attribute
// type, long values whose lengths take several bytes, an empty one, more attributes than fit,
// a link, every status with and without a message, a remote parent and a local one. They are
// built afresh for each export, since the exporter recycles what it encoded.
func sampleRecords() []*Span {
	var none *Tracer // the records are encoded, never ended
	server := none.StartSpan(KindServer, sampleStart)
	server.TraceID, server.SpanID = trace.TraceID{1, 2, 3}, trace.SpanID{7}
	server.Parent, server.RemoteParent = trace.SpanID{4, 5, 6}, true
	server.SetName("GET", "orders")
	server.AddString("http.request.method", "GET")
	server.AddString("url.path", "/"+strings.Repeat("p", 300))
	server.AddInt("http.response.status_code", 200)
	server.AddInt("big", -1<<40)
	server.AddBool("archway.retried", true)
	server.AddBool("archway.cached", false)
	server.AddBytes("empty", nil)
	server.AddAddr("client.address", netip.MustParseAddr("2001:db8::1"))
	server.AddString("huge", strings.Repeat("h", 20000))
	server.SetStatus(StatusError, "upstream refused")
	server.EndTime = server.StartTime + int64(3*time.Millisecond)

	client := none.StartSpan(KindClient, sampleStart.Add(time.Millisecond))
	client.TraceID, client.SpanID, client.Parent = server.TraceID, trace.SpanID{8}, server.SpanID
	client.SetName("GET", "")
	client.AddString("server.address", "10.0.0.1:8080")
	client.AddInt("http.request.resend_count", 0)
	client.SetStatus(StatusError, "")
	client.EndTime = client.StartTime + int64(time.Millisecond)

	linked := none.StartSpan(KindServer, sampleStart)
	linked.TraceID, linked.SpanID = trace.TraceID{9, 9}, trace.SpanID{9, 9}
	linked.LinkTraceID, linked.LinkSpanID, linked.LinkSampled = trace.TraceID{9}, trace.SpanID{8}, true
	linked.SetNameBytes([]byte("POST checkout"))
	linked.SetStatus(StatusOK, "ignored: only an error keeps its message")
	for i := range MaxAttributes + 3 {
		linked.AddInt(fmt.Sprintf("n%d", i), int64(i))
	}
	linked.EndTime = linked.StartTime + 1

	unlinked := none.StartSpan(KindServer, sampleStart)
	unlinked.TraceID, unlinked.SpanID = trace.TraceID{5}, trace.SpanID{5}
	unlinked.LinkTraceID, unlinked.LinkSpanID = trace.TraceID{6}, trace.SpanID{6} // a client's unsampled context
	unlinked.SetName("_OTHER", "")
	unlinked.EndTime = unlinked.StartTime

	// A request retried once: its first attempt's client span in the server span's record, the
	// second attempt's in a record of its own, queued before the server span's.
	host, _, second := retriedRequest()
	return []*Span{server, client, linked, unlinked, second, host}
}

// retriedRequest records a server span and two client spans under it, as the gateway records
// a request sent twice upstream: the first client span in the server span's record.
func retriedRequest() (host, first, second *Span) {
	var none *Tracer
	host = none.StartSpan(KindServer, sampleStart)
	host.TraceID, host.SpanID = trace.TraceID{3}, trace.SpanID{3}
	host.SetName("GET", "products")
	host.AddString("url.path", "/products/7")
	first = host.StartChild(KindClient, sampleStart.Add(time.Microsecond))
	first.TraceID, first.SpanID, first.Parent = host.TraceID, trace.SpanID{3, 1}, host.SpanID
	first.SetName("GET", "")
	first.AddString("server.address", "10.0.0.2:8080")
	first.AddString("error.type", "connect")
	first.SetStatus(StatusError, "dial refused")
	first.End()
	first.EndTime = first.StartTime + int64(time.Microsecond)
	second = host.StartChild(KindClient, sampleStart.Add(2*time.Microsecond))
	second.TraceID, second.SpanID, second.Parent = host.TraceID, trace.SpanID{3, 2}, host.SpanID
	second.SetName("GET", "")
	second.AddString("server.address", "10.0.0.3:8080")
	second.AddInt("http.request.resend_count", 1)
	second.AddInt("http.response.status_code", 200)
	second.EndTime = second.StartTime + int64(time.Millisecond)
	host.AddInt("http.response.status_code", 200)
	host.AddInt("archway.attempts", 2)
	host.EndTime = host.StartTime + int64(2*time.Millisecond)
	return host, first, second
}

// stub is what the OpenTelemetry SDK records for the span a record describes.
func stub(s *Span, res *resource.Resource) tracetest.SpanStub {
	sampled := trace.TraceFlags(0)
	if s.Sampled {
		sampled = trace.FlagsSampled
	}
	st := tracetest.SpanStub{
		Name:                 string(s.text(s.name)),
		SpanContext:          trace.NewSpanContext(trace.SpanContextConfig{TraceID: s.TraceID, SpanID: s.SpanID, TraceFlags: sampled}),
		SpanKind:             trace.SpanKind(s.Kind),
		StartTime:            time.Unix(0, s.StartTime),
		EndTime:              time.Unix(0, s.EndTime),
		DroppedAttributes:    s.droppedAttrs,
		Resource:             res,
		InstrumentationScope: instrumentation.Scope{Name: scopeName},
	}
	if s.Parent.IsValid() {
		st.Parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: s.TraceID, SpanID: s.Parent, TraceFlags: sampled, Remote: s.RemoteParent})
	}
	for _, a := range s.attrs[:s.nAttrs] {
		switch a.kind {
		case attrString:
			st.Attributes = append(st.Attributes, attribute.String(a.key, string(s.text(a.text))))
		case attrInt:
			st.Attributes = append(st.Attributes, attribute.Int64(a.key, a.num))
		case attrBool:
			st.Attributes = append(st.Attributes, attribute.Bool(a.key, a.num == 1))
		}
	}
	if s.LinkTraceID.IsValid() {
		flags := trace.TraceFlags(0)
		if s.LinkSampled {
			flags = trace.FlagsSampled
		}
		st.Links = []sdktrace.Link{{SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: s.LinkTraceID, SpanID: s.LinkSpanID, TraceFlags: flags, Remote: true})}}
	}
	switch s.Status {
	case StatusOK:
		st.Status = sdktrace.Status{Code: otelcodes.Ok}
	case StatusError:
		st.Status = sdktrace.Status{Code: otelcodes.Error, Description: string(s.text(s.statusMessage))}
	}
	return st
}

// sdkRequest is the ExportTraceServiceRequest the SDK's own OTLP/HTTP exporter sends for the
// spans the records describe, from a gateway named service.
func sdkRequest(t *testing.T, service string) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	res := resource.NewSchemaless(attribute.String("service.name", service))
	var stubs tracetest.SpanStubs
	for _, s := range sampleRecords() {
		if s.childEnded { // the client span in a server span's record ended first
			stubs = append(stubs, stub(s.child, res))
		}
		stubs = append(stubs, stub(s, res))
	}
	ctx := context.Background()
	theirs := startCollector(t)
	sdk, err := otlptrace.New(ctx, otlptracehttp.NewClient(otlptracehttp.WithEndpointURL(theirs.url)))
	if err != nil {
		t.Fatal(err)
	}
	if err := sdk.ExportSpans(ctx, stubs.Snapshots()); err != nil {
		t.Fatal(err)
	}
	_ = sdk.Shutdown(ctx)
	return theirs.request(t, 0)
}

func testExporter(t *testing.T, protocol config.TracingProtocol, endpoint string, env exportEnv) *exporter {
	t.Helper()
	e, err := newExporter(&config.Tracing{Endpoint: endpoint, Protocol: protocol, ServiceName: "archway", ExportTimeout: config.Duration(5 * time.Second)}, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}

// TestExportMatchesSDK: the bytes our exporter sends for span records, over OTLP/HTTP and
// OTLP/gRPC, with and without gzip, decode to the same ExportTraceServiceRequest the SDK's own
// exporter sends for the spans the records describe; the headers of OTEL_EXPORTER_OTLP_HEADERS
// go with them; and the records go back to the pool once encoded.
func TestExportMatchesSDK(t *testing.T) {
	want := sdkRequest(t, "archway")
	ctx := context.Background()
	for _, gz := range []bool{false, true} {
		env := exportEnv{gzip: gz, headers: [][2]string{{"Authorization", "Bearer token"}, {"X-Tenant", "shop"}}}
		t.Run(fmt.Sprintf("http gzip=%v", gz), func(t *testing.T) {
			c := startCollector(t)
			e := testExporter(t, config.TracingHTTP, strings.TrimSuffix(c.url, "/v1/traces"), env)
			for i := range 2 { // the second time through the reused buffer
				recs := sampleRecords()
				if err := e.Export(ctx, recs); err != nil {
					t.Fatal(err)
				}
				if recs[0].nAttrs != 0 || recs[0].TraceID.IsValid() {
					t.Fatal("an exported record was not reset for the pool")
				}
				if got := c.request(t, i); !proto.Equal(got, want) {
					t.Fatalf("export %d differs from the SDK's:\n got  %v\n want %v", i, got, want)
				}
				h := c.headers[i]
				if h.Get("Authorization") != "Bearer token" || h.Get("X-Tenant") != "shop" {
					t.Errorf("headers %v", h)
				}
				if enc := h.Get("Content-Encoding"); (enc == "gzip") != gz {
					t.Errorf("Content-Encoding %q with gzip %v", enc, gz)
				}
			}
		})
		t.Run(fmt.Sprintf("grpc gzip=%v", gz), func(t *testing.T) {
			c := startGRPCCollector(t)
			e := testExporter(t, config.TracingGRPC, "http://"+c.addr, env)
			for i := range 2 {
				if err := e.Export(ctx, sampleRecords()); err != nil {
					t.Fatal(err)
				}
				if got := c.request(t, i); !proto.Equal(got, want) {
					t.Fatalf("export %d differs from the SDK's:\n got  %v\n want %v", i, got, want)
				}
				if md := c.md[i]; !slices.Equal(md.Get("authorization"), []string{"Bearer token"}) || !slices.Equal(md.Get("x-tenant"), []string{"shop"}) {
					t.Errorf("metadata %v", md)
				}
			}
		})
	}
}

// TestChildInRecordEncodesAsTwoRecords: a client span carried in its server span's record is
// encoded byte for byte as the same two spans in records of their own, the client span first
// (it ends first, so it was queued first); the second client span takes a record of its own;
// and the record counts as two spans for the queue.
func TestChildInRecordEncodesAsTwoRecords(t *testing.T) {
	host, first, second := retriedRequest()
	if first.host != host || second.host != nil || second == first {
		t.Fatal("the first client span must be in the server span's record, the second in its own")
	}
	if host.spans() != 2 || second.spans() != 1 {
		t.Fatalf("the records count %d and %d spans, want 2 and 1", host.spans(), second.spans())
	}
	enc := newEncoder("archway")
	got := enc.appendRequest(nil, []*Span{host})

	// The same spans, each in a record of its own.
	var none *Tracer
	alone := none.StartSpan(KindClient, sampleStart.Add(time.Microsecond))
	alone.TraceID, alone.SpanID, alone.Parent = host.TraceID, first.SpanID, host.SpanID
	alone.SetName("GET", "")
	alone.AddString("server.address", "10.0.0.2:8080")
	alone.AddString("error.type", "connect")
	alone.SetStatus(StatusError, "dial refused")
	alone.EndTime = first.EndTime
	server, _, _ := retriedRequest()
	server.childEnded = false
	want := enc.appendRequest(nil, []*Span{alone, server})
	if !slices.Equal(got, want) {
		t.Fatalf("a server span with its client span in its record encodes as\n %x\nwant, as two records,\n %x", got, want)
	}
	host.release()
	if host.childUsed || host.childEnded || host.child.nAttrs != 0 || host.child.host != host {
		t.Fatal("a released record keeps its child's state")
	}
}

// TestHTTPExportRetries: 503 and 429 are sent again until the collector takes the batch; a
// 400 is final; a collector that never answers ends at the context's deadline.
func TestHTTPExportRetries(t *testing.T) {
	c := startCollector(t, http.StatusServiceUnavailable, http.StatusTooManyRequests)
	e := testExporter(t, config.TracingHTTP, c.url, exportEnv{})
	if err := e.Export(context.Background(), sampleRecords()); err != nil {
		t.Fatalf("after two refusals: %v", err)
	}
	c.request(t, 0)

	bad := startCollector(t, http.StatusBadRequest, http.StatusOK)
	e = testExporter(t, config.TracingHTTP, bad.url, exportEnv{})
	if err := e.Export(context.Background(), sampleRecords()); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("a 400 gave %v, want a final error", err)
	}

	gone := testExporter(t, config.TracingHTTP, "http://"+freeAddr(t), exportEnv{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := gone.Export(ctx, sampleRecords()); err == nil {
		t.Fatal("no collector, yet no error")
	}
}

// TestGRPCExportRetries: UNAVAILABLE is sent again until the collector takes the batch, with the
// same bytes; INVALID_ARGUMENT is final; a collector that is not there ends at the context's
// deadline.
func TestGRPCExportRetries(t *testing.T) {
	want := sdkRequest(t, "archway")
	c := startGRPCCollector(t, codes.Unavailable, codes.Unavailable)
	e := testExporter(t, config.TracingGRPC, "http://"+c.addr, exportEnv{})
	if err := e.Export(context.Background(), sampleRecords()); err != nil {
		t.Fatalf("after two refusals: %v", err)
	}
	if got := c.request(t, 0); !proto.Equal(got, want) {
		t.Fatalf("the batch sent again differs from the SDK's:\n got  %v\n want %v", got, want)
	}

	bad := startGRPCCollector(t, codes.InvalidArgument)
	e = testExporter(t, config.TracingGRPC, "http://"+bad.addr, exportEnv{})
	err := e.Export(context.Background(), sampleRecords())
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("INVALID_ARGUMENT gave %v, want a final error", err)
	}

	gone := testExporter(t, config.TracingGRPC, "http://"+freeAddr(t), exportEnv{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := gone.Export(ctx, sampleRecords()); err == nil {
		t.Fatal("no collector, yet no error")
	}
}

func TestReadExportEnv(t *testing.T) {
	for _, tc := range []struct {
		env     map[string]string
		want    exportEnv
		wantErr string
	}{
		{env: nil, want: exportEnv{}},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%20b, tenant = shop ", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"},
			want: exportEnv{headers: [][2]string{{"api-key", "a b"}, {"tenant", "shop"}}, gzip: true}},
		// The traces variable wins over the general one.
		{env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "a=1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=2",
			"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none"},
			want: exportEnv{headers: [][2]string{{"b", "2"}}}},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "novalue"}, wantErr: `OTEL_EXPORTER_OTLP_TRACES_HEADERS: "novalue" is not key=value`},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, wantErr: `OTEL_EXPORTER_OTLP_COMPRESSION: "zstd" is not gzip or none`},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"}, wantErr: "OTEL_EXPORTER_OTLP_CERTIFICATE: open /nonexistent/ca.pem"},
	} {
		got, err := readExportEnv(func(k string) string { return tc.env[k] })
		if tc.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Errorf("%v: error %v, want %q", tc.env, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.gzip != tc.want.gzip || !slices.Equal(got.headers, tc.want.headers) || got.tls != nil {
			t.Errorf("%v: %+v, %v; want %+v", tc.env, got, err, tc.want)
		}
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
