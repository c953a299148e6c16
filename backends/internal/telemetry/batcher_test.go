package telemetry

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/exportqueue"
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
	var c exportqueue.Counts
	b := newBatcher(exp, batchSettings{queue: 16, batch: 16, delay: time.Hour, exportTimeout: 200 * time.Millisecond}, &c)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(b))
	for range 3 {
		_, span := tp.Tracer("t").Start(context.Background(), "s")
		span.End()
	}
	// An unsampled span is not the batcher's to export (a parent-based sampler records it when
	// its parent was not sampled): it is neither queued nor counted.
	unsampled := tracetest.SpanStub{Name: "unsampled", SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}})}
	b.OnEnd(unsampled.Snapshot())
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := c.DroppedFor(exportqueue.DropExportFailed); n != 3 || c.Dropped() != 3 {
		t.Fatalf("%d spans counted as export_failed (%d dropped in all), want 3", n, c.Dropped())
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
