package telemetry

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// batcher is the services' span processor. It does what the SDK's BatchSpanProcessor does (a
// bounded queue that ending a span never waits on, one goroutine sending batches, sized and
// timed by the OTEL_BSP_* variables) and it counts every span it loses, by reason, in counts.
// The SDK's processor drops silently: its counts exist only behind an experimental switch. The
// gateway's export queue (gateway/tracing) is the same design; the services may not import it.
type batcher struct {
	exporter      sdktrace.SpanExporter
	spans         chan sdktrace.ReadOnlySpan
	flush         chan chan struct{}
	stop          chan struct{}
	done          chan struct{}
	batch         int
	delay         time.Duration
	exportTimeout time.Duration
	counts        *spanCounts
	stopOnce      sync.Once
}

var _ sdktrace.SpanProcessor = (*batcher)(nil)

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

func newBatcher(exp sdktrace.SpanExporter, s batchSettings, counts *spanCounts) *batcher {
	b := &batcher{
		exporter: exp, spans: make(chan sdktrace.ReadOnlySpan, s.queue), flush: make(chan chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{}),
		batch: s.batch, delay: s.delay, exportTimeout: s.exportTimeout, counts: counts,
	}
	go b.run() // owned by the batcher: Shutdown stops it and waits for it
	return b
}

// OnStart implements sdktrace.SpanProcessor.
func (b *batcher) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd implements sdktrace.SpanProcessor: the span joins the queue, or is dropped and counted
// when the queue is full. It never blocks the request that ended the span.
func (b *batcher) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	select {
	case <-b.stop:
		b.counts.dropped[dropShutdown].Add(1)
		return
	default:
	}
	select {
	case b.spans <- s:
	default:
		b.counts.dropped[dropQueueFull].Add(1)
	}
}

// ForceFlush implements sdktrace.SpanProcessor: what is queued now is exported before it returns.
func (b *batcher) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case b.flush <- ack:
	case <-b.done:
		return errShutdown
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown implements sdktrace.SpanProcessor: it exports what is queued, within ctx, then shuts
// the exporter down.
func (b *batcher) Shutdown(ctx context.Context) error {
	b.stopOnce.Do(func() { close(b.stop) })
	select {
	case <-b.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.exporter.Shutdown(ctx)
}

func (b *batcher) run() {
	defer close(b.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, b.batch)
	tick := time.NewTicker(b.delay)
	defer tick.Stop()
	send := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.exportTimeout)
		err := b.exporter.ExportSpans(ctx, batch)
		cancel()
		if err != nil {
			b.counts.dropped[dropExportFailed].Add(uint64(len(batch)))
		} else {
			b.counts.exported.Add(uint64(len(batch)))
		}
		clear(batch)
		batch = batch[:0]
	}
	add := func(s sdktrace.ReadOnlySpan) {
		batch = append(batch, s)
		if len(batch) == b.batch {
			send()
		}
	}
	drain := func() {
		for {
			select {
			case s := <-b.spans:
				add(s)
			default:
				send()
				return
			}
		}
	}
	for {
		select {
		case s := <-b.spans:
			add(s)
		case <-tick.C:
			send()
		case ack := <-b.flush:
			drain()
			close(ack)
		case <-b.stop:
			drain()
			return
		}
	}
}

// errShutdown is returned by a batcher that was shut down.
var errShutdown = errors.New("span batcher is shut down")

// Reasons a span is dropped, the values of the reason label.
const (
	dropQueueFull = iota
	dropExportFailed
	dropShutdown
	numDropReasons
)

var dropReasons = [numDropReasons]string{"queue_full", "export_failed", "shutdown"}

// spanCounts are what this process's batcher exported and lost. One per process, as the tracer
// provider is.
type spanCounts struct {
	exported atomic.Uint64
	dropped  [numDropReasons]atomic.Uint64
}

// counts are the process's: Setup's batcher adds to them, Collector reports them (0 while
// tracing is off).
var counts spanCounts

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
	counts            *spanCounts
	exported, dropped *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.exported
	ch <- c.dropped
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.exported, prometheus.CounterValue, float64(c.counts.exported.Load()))
	for i, r := range dropReasons {
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(c.counts.dropped[i].Load()), r)
	}
}
