package telemetry

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestReadBatchSettings(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want batchSettings
	}{
		{nil, batchSettings{queue: 2048, batch: 512, delay: 5 * time.Second, exportTimeout: 30 * time.Second}},
		{map[string]string{"OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10", "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_BSP_EXPORT_TIMEOUT": "2000"},
			batchSettings{queue: 100, batch: 10, delay: 200 * time.Millisecond, exportTimeout: 2 * time.Second}},
		// A batch larger than the queue is the queue; nonsense takes the default.
		{map[string]string{"OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1000", "OTEL_BSP_SCHEDULE_DELAY": "-5", "OTEL_BSP_EXPORT_TIMEOUT": "soon"},
			batchSettings{queue: 100, batch: 100, delay: 5 * time.Second, exportTimeout: 30 * time.Second}},
	} {
		if got := readBatchSettings(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("%v: %+v, want %+v", tc.env, got, tc.want)
		}
	}
}

// gate is an exporter that takes batches only once it is opened.
type gate struct {
	open     chan struct{}
	exported atomic.Int64
}

func (g *gate) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.exported.Add(int64(len(spans)))
	return nil
}

func (g *gate) Shutdown(context.Context) error { return nil }

// TestBatcherCountsEverySpan: a collector that stalls makes the queue drop and count what does
// not fit, without the span's end waiting; what fits is exported once it answers; a span ended
// after shutdown is counted too. Every span ended is accounted for.
func TestBatcherCountsEverySpan(t *testing.T) {
	var c spanCounts
	g := &gate{open: make(chan struct{})}
	b := newBatcher(g, batchSettings{queue: 2, batch: 1, delay: time.Hour, exportTimeout: time.Minute}, &c)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(b))
	const ended = 10
	for range ended {
		_, span := tp.Tracer("t").Start(context.Background(), "s")
		span.End() // never waits: the exporter is stalled
	}
	// At most one batch in the exporter and two spans in the queue: the rest were dropped.
	if d := c.dropped[dropQueueFull].Load(); d < ended-3 {
		t.Fatalf("%d spans dropped as queue_full, want at least %d", d, ended-3)
	}
	close(g.open)
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	exported, dropped := c.exported.Load(), c.dropped[dropQueueFull].Load()
	if exported+dropped != ended || g.exported.Load() != int64(exported) {
		t.Fatalf("exported %d + dropped %d != %d ended (the exporter took %d)", exported, dropped, ended, g.exported.Load())
	}
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A span that ends after the shutdown (the provider no longer starts recording spans, so
	// one is made by hand).
	late := tracetest.SpanStub{Name: "late", SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled})}
	b.OnEnd(late.Snapshot())
	if n := c.dropped[dropShutdown].Load(); n != 1 {
		t.Errorf("%d spans dropped at shutdown, want 1", n)
	}
}

// TestBatcherCountsFailedExports: spans sent to a collector that is not there are counted as
// export_failed once the export timeout ends their batch, and the service's /metrics shows it.
func TestBatcherCountsFailedExports(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close() // refuses connections from now on
	exp, err := otlptrace.New(context.Background(), otlptracehttp.NewClient(otlptracehttp.WithEndpointURL("http://"+gone+"/v1/traces")))
	if err != nil {
		t.Fatal(err)
	}
	var c spanCounts
	b := newBatcher(exp, batchSettings{queue: 16, batch: 16, delay: time.Hour, exportTimeout: 200 * time.Millisecond}, &c)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(b))
	for range 3 {
		_, span := tp.Tracer("t").Start(context.Background(), "s")
		span.End()
	}
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := c.dropped[dropExportFailed].Load(); n != 3 {
		t.Fatalf("%d spans counted as export_failed, want 3", n)
	}

	reg := prometheus.NewRegistry()
	col := Collector("orders")
	col.(*collector).counts = &c
	reg.MustRegister(col)
	want := `
# HELP orders_tracing_spans_dropped_total Spans lost before the collector accepted them, by reason: queue_full (the export queue, OTEL_BSP_MAX_QUEUE_SIZE, was full: the collector is slow or down), export_failed (the collector refused or could not be reached), shutdown (ended after tracing stopped).
# TYPE orders_tracing_spans_dropped_total counter
orders_tracing_spans_dropped_total{reason="export_failed"} 3
orders_tracing_spans_dropped_total{reason="queue_full"} 0
orders_tracing_spans_dropped_total{reason="shutdown"} 0
# HELP orders_tracing_spans_exported_total Spans the trace collector accepted.
# TYPE orders_tracing_spans_exported_total counter
orders_tracing_spans_exported_total 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if err := tp.Shutdown(context.Background()); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
}
