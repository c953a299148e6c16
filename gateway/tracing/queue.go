package tracing

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// queue is the span processor between ended spans and the exporter: a bounded channel that
// OnEnd never waits on, and one goroutine that sends batches. The SDK's BatchSpanProcessor does
// the same but drops silently (its counts exist only behind an experimental switch); this one
// counts every span it loses, by reason, in Stats.
//
// The sender does not wait on the channel itself: it would be woken for every span, two
// goroutine switches per sampled request. It wakes when a batch is waiting (OnEnd kicks it), at
// each batch_timeout, on a flush and at shutdown, and then takes what the channel holds.
type queue struct {
	exporter sdktrace.SpanExporter
	spans    chan sdktrace.ReadOnlySpan
	kick     chan struct{} // a batch is waiting; capacity 1, never blocks
	// wake is how many queued spans kick the sender: a batch, or half the queue when that is
	// less, so that spans ending while it wakes still find room.
	wake          int
	flush         chan chan struct{}
	stop          chan struct{}
	done          chan struct{}
	batch         int
	timeout       time.Duration
	exportTimeout time.Duration
	stats         *Stats
	stopOnce      sync.Once
}

var _ sdktrace.SpanProcessor = (*queue)(nil)

func newQueue(exp sdktrace.SpanExporter, size, batch int, timeout, exportTimeout time.Duration, stats *Stats) *queue {
	q := &queue{
		exporter: exp, spans: make(chan sdktrace.ReadOnlySpan, size), kick: make(chan struct{}, 1), flush: make(chan chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{}),
		batch: batch, timeout: timeout, exportTimeout: exportTimeout, stats: stats,
		wake: max(1, min(batch, size/2)),
	}
	go q.run() // owned by the queue: Shutdown stops it and waits for it
	return q
}

// OnStart implements sdktrace.SpanProcessor.
func (q *queue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd implements sdktrace.SpanProcessor: the span joins the queue, or is dropped and counted
// when the queue is full. It never blocks the request that ended the span.
func (q *queue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	select {
	case <-q.stop:
		q.stats.dropped[dropShutdown].Add(1)
		return
	default:
	}
	select {
	case q.spans <- s:
		if len(q.spans) >= q.wake {
			select {
			case q.kick <- struct{}{}:
			default: // already kicked
			}
		}
	default:
		q.stats.dropped[dropQueueFull].Add(1)
	}
}

// ForceFlush implements sdktrace.SpanProcessor: what is queued now is exported before it returns.
func (q *queue) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case q.flush <- ack:
	case <-q.done:
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
func (q *queue) Shutdown(ctx context.Context) error {
	q.stopOnce.Do(func() { close(q.stop) })
	select {
	case <-q.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return q.exporter.Shutdown(ctx)
}

func (q *queue) run() {
	defer close(q.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, q.batch)
	tick := time.NewTicker(q.timeout)
	defer tick.Stop()
	send := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), q.exportTimeout)
		err := q.exporter.ExportSpans(ctx, batch)
		cancel()
		if err != nil {
			q.stats.dropped[dropExportFailed].Add(uint64(len(batch)))
			q.stats.noteError(err)
		} else {
			q.stats.exported.Add(uint64(len(batch)))
		}
		clear(batch)
		batch = batch[:0]
	}
	// take moves what the channel holds into batches, sending each full one; all sends the
	// rest too, take keeps it for the next wake.
	take := func(all bool) {
		for {
			select {
			case s := <-q.spans:
				batch = append(batch, s)
				if len(batch) == q.batch {
					send()
				}
			default:
				if all {
					send()
				}
				return
			}
		}
	}
	drain := func() { take(true) }
	for {
		select {
		case <-q.kick:
			take(false)
		case <-tick.C:
			drain()
		case ack := <-q.flush:
			drain()
			close(ack)
		case <-q.stop:
			drain()
			return
		}
	}
}

// Reasons a span is dropped, the values of the reason label.
const (
	dropQueueFull = iota
	dropExportFailed
	dropShutdown
	numDropReasons
)

var dropReasons = [numDropReasons]string{"queue_full", "export_failed", "shutdown"}

// Stats counts what the gateway's tracers exported and lost. One Stats outlives the tracers of
// successive configurations. Safe for concurrent use.
type Stats struct {
	exported atomic.Uint64
	dropped  [numDropReasons]atomic.Uint64
	lastErr  atomic.Pointer[string]
}

func (s *Stats) noteError(err error) {
	msg := err.Error()
	s.lastErr.Store(&msg)
}

// Exported returns how many spans the collector accepted.
func (s *Stats) Exported() uint64 { return s.exported.Load() }

// Dropped returns how many spans were lost, for every reason together.
func (s *Stats) Dropped() uint64 {
	var n uint64
	for i := range s.dropped {
		n += s.dropped[i].Load()
	}
	return n
}

// LastError is the last export failure, or "".
func (s *Stats) LastError() string {
	if p := s.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

var (
	descExported = prometheus.NewDesc("archway_tracing_spans_exported_total", "Spans the trace collector accepted.", nil, nil)
	descDropped  = prometheus.NewDesc("archway_tracing_spans_dropped_total",
		"Spans lost before the collector accepted them, by reason: queue_full (the export queue was full: the collector is slow or down), export_failed (the collector refused or could not be reached), shutdown (ended after the tracer stopped).",
		[]string{"reason"}, nil)
)

// Describe implements prometheus.Collector.
func (s *Stats) Describe(ch chan<- *prometheus.Desc) {
	ch <- descExported
	ch <- descDropped
}

// Collect implements prometheus.Collector.
func (s *Stats) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descExported, prometheus.CounterValue, float64(s.exported.Load()))
	for i, r := range dropReasons {
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.dropped[i].Load()), r)
	}
}
