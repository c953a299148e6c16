// Package tracing is the gateway's OpenTelemetry tracing: W3C Trace Context in and out, the
// sampling decision, the span records of sampled requests and their export over OTLP through a
// bounded queue.
//
// The request path decides sampling itself: a request that is not sampled (and every request
// while tracing is off) gets its ids from a per-goroutine random source and its traceparent
// written into the upstream request, and allocates nothing. A sampled request records its spans
// in fixed-shape records from the tracer's bounded free list (span.go; the first client span in
// the server span's record), not in the OpenTelemetry SDK's span objects; the exporter encodes
// them as OTLP for either transport (otlp.go, export.go) and returns them to the list.
package tracing

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"reflect"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/exportqueue"
	"go.opentelemetry.io/otel/trace"
)

// Tracer is one configuration's tracing: its exporter, queue and sampling. Immutable once
// built and safe for concurrent use; Shutdown flushes it when a reload replaces it.
type Tracer struct {
	cfg   config.Tracing
	queue *exportqueue.Queue[*Span]
	// records are the span records of this tracer (span.go); counts, its export counts.
	records *records
	counts  *exportqueue.Counts
	// threshold is the sample ratio as a bound on a random uint64: sampled when below it.
	threshold uint64
	trusted   []netip.Prefix
}

// New builds the tracer of cfg. trustedProxies stand in for trusted_sources when that is empty.
// stats receives the export and drop counts; it outlives tracers, so counts survive reloads.
// The OTEL_EXPORTER_OTLP_* variables add headers, compression and TLS files, as they do to the
// SDK's exporters.
func New(cfg *config.Tracing, trustedProxies []netip.Prefix, stats *Stats) (*Tracer, error) {
	env, err := readExportEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	exp, err := newExporter(cfg, env)
	if err != nil {
		return nil, err
	}
	if stats.Log != nil {
		exp.log = stats.Log
	}
	t := &Tracer{
		cfg: *cfg,
		queue: exportqueue.NewWeighted(exp, exportqueue.Settings{
			Size: cfg.QueueSize, Batch: cfg.BatchSize, Interval: cfg.BatchTimeout.D(), ExportTimeout: cfg.ExportTimeout.D(),
		}, &stats.Counts, (*Span).spans),
		records:   newRecords(cfg.QueueSize, cfg.BatchSize),
		counts:    &stats.Counts,
		threshold: Threshold(cfg.SampleRatio),
		trusted:   trustedProxies,
	}
	if len(cfg.TrustedSources) > 0 {
		t.trusted = make([]netip.Prefix, len(cfg.TrustedSources))
		for i, c := range cfg.TrustedSources {
			t.trusted[i] = c.Prefix
		}
	}
	return t, nil
}

// Matches reports whether t was built from cfg and trustedProxies, so a reload that changes
// neither keeps it (and its queue).
func (t *Tracer) Matches(cfg *config.Tracing, trustedProxies []netip.Prefix) bool {
	if t == nil || cfg == nil {
		return false
	}
	a, b := t.cfg, *cfg
	a.Enabled, b.Enabled = nil, nil
	if !reflect.DeepEqual(a, b) {
		return false
	}
	if len(cfg.TrustedSources) > 0 {
		return true
	}
	if len(t.trusted) != len(trustedProxies) {
		return false
	}
	for i := range trustedProxies {
		if t.trusted[i] != trustedProxies[i] {
			return false
		}
	}
	return true
}

// Shutdown exports what is queued (within ctx) and stops the exporter. Spans ended after it
// are dropped and counted.
func (t *Tracer) Shutdown(ctx context.Context) error { return t.queue.Shutdown(ctx) }

// ForceFlush exports what is queued now.
func (t *Tracer) ForceFlush(ctx context.Context) error { return t.queue.ForceFlush(ctx) }

// Threshold turns a sample ratio into the bound Sample compares a random uint64 against.
func Threshold(ratio float64) uint64 {
	switch {
	case ratio >= 1:
		return math.MaxUint64
	case ratio <= 0:
		return 0
	}
	t := ratio * (1 << 63) * 2
	if t >= 1<<64 { // a ratio a hair under 1 rounds up to 2^64, which uint64 cannot hold
		return math.MaxUint64
	}
	return uint64(t)
}

// Threshold is the tracer's own ratio as a bound, for routes that do not set theirs.
func (t *Tracer) Threshold() uint64 { return t.threshold }

// Sample decides a new trace as the OpenTelemetry TraceIDRatioBased sampler does: from the
// trace id's last 8 bytes, so the share of traces sampled is the ratio threshold stands for
// (ids are random) and every sampler of that ratio decides one trace alike.
func Sample(tid trace.TraceID, threshold uint64) bool {
	if threshold == math.MaxUint64 {
		return true
	}
	return binary.BigEndian.Uint64(tid[8:]) < threshold
}

// Trusts reports whether an incoming trace context from peer is continued.
func (t *Tracer) Trusts(peer netip.Addr) bool {
	if t.cfg.Incoming != config.TracingTrust {
		return false
	}
	for _, p := range t.trusted {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

// NewTraceID returns a random trace id; NewSpanID a random span id. Neither allocates nor locks.
//
// The bits come from math/rand/v2's top-level functions, that is the Go runtime's generator:
// ChaCha8, one state per OS thread running Go code (so no lock and no shared cache line), seeded
// from the kernel's entropy and reseeded as it goes. That keeps trace ids unpredictable, as
// W3C Trace Context asks of ids that are exposed to other parties (its privacy and security
// sections, and the random trace-id flag of level 2, which needs at least the right 7 bytes
// random), while a draw costs a few nanoseconds, less than formatting the header. A faster
// non-cryptographic generator per connection (a xorshift or PCG seeded once) was not taken:
// from a few ids a client sees in its answers' traces it could predict the next ones, and the
// draws are not where a sampled request's cost is (docs/benchmarks.md).
func NewTraceID() (id trace.TraceID) {
	for {
		binary.LittleEndian.PutUint64(id[:8], rand.Uint64())
		binary.LittleEndian.PutUint64(id[8:], rand.Uint64())
		if id.IsValid() {
			return id
		}
	}
}

// NewSpanID returns a random, valid span id.
func NewSpanID() (id trace.SpanID) {
	for {
		binary.LittleEndian.PutUint64(id[:], rand.Uint64())
		if id.IsValid() {
			return id
		}
	}
}
