package tracing

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/exportqueue"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func testTracer(t *testing.T, endpoint string, queue, batch int, exportTimeout time.Duration) (*Tracer, *Stats) {
	t.Helper()
	stats := &Stats{}
	tr, err := New(&config.Tracing{
		Endpoint: endpoint, Protocol: config.TracingHTTP, SampleRatio: 1, QueueSize: queue, BatchSize: batch,
		BatchTimeout: config.Duration(time.Hour), ExportTimeout: config.Duration(exportTimeout),
		ServiceName: "archway", Incoming: config.TracingTrust,
	}, nil, stats)
	if err != nil {
		t.Fatal(err)
	}
	return tr, stats
}

// TestEndedSpansAreExported: a record ended goes through the queue to the collector with its
// ids, name, kind and a duration measured on the monotonic clock.
func TestEndedSpansAreExported(t *testing.T) {
	c := startCollector(t)
	tr, stats := testTracer(t, strings.TrimSuffix(c.url, "/v1/traces"), 16, 16, 5*time.Second)
	defer tr.Shutdown(context.Background())
	start := time.Now()
	s := tr.StartSpan(KindServer, start)
	s.TraceID, s.SpanID = trace.TraceID{1}, trace.SpanID{2}
	s.SetName("GET", "app")
	s.AddInt("http.response.status_code", 204)
	s.End()
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if stats.Exported() != 1 || stats.Dropped() != 0 {
		t.Fatalf("exported %d, dropped %d; want 1 and 0", stats.Exported(), stats.Dropped())
	}
	rs := c.request(t, 0).ResourceSpans
	if len(rs) != 1 || serviceName(rs[0]) != "archway" || len(rs[0].ScopeSpans) != 1 || len(rs[0].ScopeSpans[0].Spans) != 1 {
		t.Fatalf("want one span of archway, got %v", rs)
	}
	if rs[0].ScopeSpans[0].Scope.GetName() != scopeName {
		t.Errorf("scope %v", rs[0].ScopeSpans[0].Scope)
	}
	sp := rs[0].ScopeSpans[0].Spans[0]
	if sp.Name != "GET app" || sp.TraceId[0] != 1 || sp.SpanId[0] != 2 || sp.Kind != 2 || len(sp.Attributes) != 1 {
		t.Errorf("span %v", sp)
	}
	if sp.StartTimeUnixNano != uint64(start.UnixNano()) || sp.EndTimeUnixNano < sp.StartTimeUnixNano {
		t.Errorf("span runs from %d to %d, want from %d", sp.StartTimeUnixNano, sp.EndTimeUnixNano, start.UnixNano())
	}
}

// TestCollectorDownNeverBlocks: with no collector, ending spans never waits: what does not
// fit in the queue is dropped and counted at once, what was queued is counted as
// export_failed once its batch runs out of time, and a span ended after Shutdown is counted
// too. Every span ended is accounted for.
func TestCollectorDownNeverBlocks(t *testing.T) {
	tr, stats := testTracer(t, "http://"+freeAddr(t), 2, 1, 300*time.Millisecond)
	const ended = 10
	for i := range ended {
		s := tr.StartSpan(KindServer, time.Now())
		if s == nil {
			// Every record is taken (the exporter holds the first batch, the queue is full
			// with the next): the span is dropped, counted as queue_full, without a wait.
			continue
		}
		s.TraceID, s.SpanID = trace.TraceID{1}, trace.SpanID{byte(i + 1)}
		s.End() // never waits: the exporter is stuck retrying the first batch
	}
	if d := stats.DroppedFor(exportqueue.DropQueueFull); d < ended-3 {
		t.Fatalf("%d spans dropped as queue_full, want at least %d", d, ended-3)
	}
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	full, failed := stats.DroppedFor(exportqueue.DropQueueFull), stats.DroppedFor(exportqueue.DropExportFailed)
	if stats.Exported() != 0 || full+failed != ended {
		t.Fatalf("exported %d, queue_full %d, export_failed %d; want 0 and %d dropped in all", stats.Exported(), full, failed, ended)
	}
	if stats.LastError() == "" {
		t.Error("no export error kept")
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	late := tr.StartSpan(KindServer, time.Now())
	late.End()
	if n := stats.DroppedFor(exportqueue.DropShutdown); n != 1 {
		t.Errorf("%d spans dropped at shutdown, want 1", n)
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
