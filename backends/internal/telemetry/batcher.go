package telemetry

import (
	"context"
	"strconv"
	"time"

	"github.com/archway-gateway/archway/internal/exportqueue"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// batcher is the services' span processor: the SDK's spans go through the export queue the
// gateway uses too (internal/exportqueue: bounded, ending a span never waits on it, one goroutine
// sending batches), sized and timed by the OTEL_BSP_* variables, and every span it loses is
// counted, by reason, in counts. The SDK's BatchSpanProcessor drops silently: its counts exist
// only behind an experimental switch.
type batcher struct {
	queue *exportqueue.Queue[sdktrace.ReadOnlySpan]
}

var _ sdktrace.SpanProcessor = (*batcher)(nil)

// sdkExporter is the SDK's exporter as the queue calls it.
type sdkExporter struct{ sdktrace.SpanExporter }

func (e sdkExporter) Export(ctx context.Context, batch []sdktrace.ReadOnlySpan) error {
	return e.ExportSpans(ctx, batch)
}

// batchSettings are the OTEL_BSP_* values, with the specification's defaults.
type batchSettings struct {
	queue, batch         int
	delay, exportTimeout time.Duration
}

// readBatchSettings reads OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
// OTEL_BSP_SCHEDULE_DELAY and OTEL_BSP_EXPORT_TIMEOUT (milliseconds) as the SDK does: a value
// that is missing, not a number or not positive takes the default, and a batch is never larger
// than the queue.
func readBatchSettings(get func(string) string) batchSettings {
	num := func(key string, def int) int {
		if v, err := strconv.Atoi(get(key)); err == nil && v > 0 {
			return v
		}
		return def
	}
	s := batchSettings{
		queue:         num("OTEL_BSP_MAX_QUEUE_SIZE", 2048),
		batch:         num("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
		delay:         time.Duration(num("OTEL_BSP_SCHEDULE_DELAY", 5000)) * time.Millisecond,
		exportTimeout: time.Duration(num("OTEL_BSP_EXPORT_TIMEOUT", 30000)) * time.Millisecond,
	}
	s.batch = min(s.batch, s.queue)
	return s
}

func newBatcher(exp sdktrace.SpanExporter, s batchSettings, counts *exportqueue.Counts) *batcher {
	return &batcher{queue: exportqueue.New[sdktrace.ReadOnlySpan](sdkExporter{exp}, exportqueue.Settings{
		Size: s.queue, Batch: s.batch, Interval: s.delay, ExportTimeout: s.exportTimeout,
	}, counts)}
}

// OnStart implements sdktrace.SpanProcessor.
func (b *batcher) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd implements sdktrace.SpanProcessor: the span joins the queue, or is dropped and counted
// when the queue is full. It never blocks the request that ended the span.
func (b *batcher) OnEnd(s sdktrace.ReadOnlySpan) {
	if s.SpanContext().IsSampled() {
		b.queue.Add(s)
	}
}

// ForceFlush implements sdktrace.SpanProcessor: what is queued now is exported before it returns.
func (b *batcher) ForceFlush(ctx context.Context) error { return b.queue.ForceFlush(ctx) }

// Shutdown implements sdktrace.SpanProcessor: it exports what is queued, within ctx, then shuts
// the exporter down.
func (b *batcher) Shutdown(ctx context.Context) error { return b.queue.Shutdown(ctx) }

// counts are the process's: Setup's batcher adds to them, Collector reports them (0 while
// tracing is off). One per process, as the tracer provider is.
var counts exportqueue.Counts

// Collector reports the span export counts of this process as
// <service>_tracing_spans_exported_total and <service>_tracing_spans_dropped_total{reason}
// (service_... when service is empty).
func Collector(service string) prometheus.Collector {
	if service == "" {
		service = "service"
	}
	return &collector{
		counts:   &counts,
		exported: prometheus.NewDesc(service+"_tracing_spans_exported_total", "Spans the trace collector accepted.", nil, nil),
		dropped: prometheus.NewDesc(service+"_tracing_spans_dropped_total",
			"Spans lost before the collector accepted them, by reason: queue_full (the export queue, OTEL_BSP_MAX_QUEUE_SIZE, was full: the collector is slow or down), export_failed (the collector refused or could not be reached), shutdown (ended after tracing stopped).",
			[]string{"reason"}, nil),
	}
}

type collector struct {
	counts            *exportqueue.Counts
	exported, dropped *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.exported
	ch <- c.dropped
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.exported, prometheus.CounterValue, float64(c.counts.Exported()))
	for i, r := range exportqueue.DropReasons {
		if i == exportqueue.DropRejected {
			continue // the SDK's exporter handles a partial success itself (it logs it): never counted here
		}
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(c.counts.DroppedFor(i)), r)
	}
}
