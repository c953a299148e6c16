// Package tracing is the gateway's OpenTelemetry tracing: W3C Trace Context in and out, the
// sampling decision, and span export over OTLP through a bounded queue.
//
// The request path decides sampling itself, before the SDK is involved: a request that is not
// sampled (and every request while tracing is off) gets its ids from a per-goroutine random
// source and its traceparent written into the upstream request, and allocates nothing. Only a
// sampled request starts SDK spans.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"reflect"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Tracer is one configuration's tracing: its exporter, queue and sampling. Immutable once
// built and safe for concurrent use; Shutdown flushes it when a reload replaces it.
type Tracer struct {
	cfg      config.Tracing
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	queue    *queue
	// threshold is the sample ratio as a bound on a random uint64: sampled when below it.
	threshold uint64
	trusted   []netip.Prefix
}

// New builds the tracer of cfg. trustedProxies stand in for trusted_sources when that is empty.
// stats receives the export and drop counts; it outlives tracers, so counts survive reloads.
func New(cfg *config.Tracing, trustedProxies []netip.Prefix, stats *Stats) (*Tracer, error) {
	exp, err := newExporter(cfg)
	if err != nil {
		return nil, err
	}
	q := newQueue(exp, cfg.QueueSize, cfg.BatchSize, cfg.BatchTimeout.D(), cfg.ExportTimeout.D(), stats)
	res := resource.NewSchemaless(attribute.String("service.name", cfg.ServiceName))
	provider := sdktrace.NewTracerProvider(
		// The request path samples before it starts a span; the SDK records what it is given.
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(q),
		sdktrace.WithResource(res),
	)
	t := &Tracer{
		cfg: *cfg, provider: provider, queue: q,
		tracer:    provider.Tracer("github.com/archway-gateway/archway/gateway"),
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

func newExporter(cfg *config.Tracing) (sdktrace.SpanExporter, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("tracing endpoint: %w", err)
	}
	// The exporter's own retries stop within one export timeout: a collector that is down must
	// cost the queue one timeout per batch, not a minute of backoff.
	timeout := cfg.ExportTimeout.D()
	switch cfg.Protocol {
	case config.TracingGRPC:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(u.Host), otlptracegrpc.WithTimeout(timeout),
			otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: true, InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second, MaxElapsedTime: timeout})}
		if u.Scheme == "http" {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		return otlptrace.New(context.Background(), otlptracegrpc.NewClient(opts...))
	default:
		// Our own OTLP/HTTP exporter (otlphttp.go): the same protobuf, without building the
		// message objects first. It retries within the export timeout as the SDK's would.
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/traces"
		}
		return newHTTPExporter(u.String(), timeout), nil
	}
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

// Shutdown exports what is queued (within ctx) and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error { return t.provider.Shutdown(ctx) }

// ForceFlush exports what is queued now.
func (t *Tracer) ForceFlush(ctx context.Context) error { return t.provider.ForceFlush(ctx) }

// SDK returns the tracer that starts sampled spans.
func (t *Tracer) SDK() trace.Tracer { return t.tracer }

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

// Sample decides a new trace: true for a share of calls given by threshold.
func Sample(threshold uint64) bool {
	if threshold == math.MaxUint64 {
		return true
	}
	return rand.Uint64() < threshold
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

// NewTraceID returns a random trace id; NewSpanID a random span id. Neither allocates nor locks
// (math/rand/v2's generator is per goroutine).
func NewTraceID() (id trace.TraceID) {
	for {
		a, b := rand.Uint64(), rand.Uint64()
		for i := range 8 {
			id[i], id[8+i] = byte(a>>(8*i)), byte(b>>(8*i))
		}
		if id.IsValid() {
			return id
		}
	}
}

// NewSpanID returns a random, valid span id.
func NewSpanID() (id trace.SpanID) {
	for {
		a := rand.Uint64()
		for i := range 8 {
			id[i] = byte(a >> (8 * i))
		}
		if id.IsValid() {
			return id
		}
	}
}

// errShutdown is returned by a queue that was shut down.
var errShutdown = errors.New("tracing queue is shut down")
