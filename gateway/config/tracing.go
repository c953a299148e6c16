package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Tracing exports OpenTelemetry traces of the requests the gateway serves (server.tracing).
// Without the section, or with enabled: false, tracing is off and the request path pays one nil
// check for it.
type Tracing struct {
	// Enabled defaults to true when the section is present; it exists so that one file can turn
	// tracing on from the environment ("${ARCHWAY_TRACING:-false}").
	Enabled *bool `yaml:"enabled"`
	// Endpoint is the collector's OTLP URL: http://host:4318 for http/protobuf (the path
	// /v1/traces is added when the URL has none), http://host:4317 for grpc; https:// uses TLS.
	Endpoint string          `yaml:"endpoint"`
	Protocol TracingProtocol `yaml:"protocol"`
	// SampleRatio is the share of new traces recorded, 0 to 1. A trusted incoming context keeps
	// its own decision (parent-based sampling); routes may set their own ratio.
	SampleRatio float64 `yaml:"sample_ratio"`
	// QueueSize bounds the spans waiting for export; when it is full (the collector is slow or
	// down) further spans are dropped and counted, never waited for.
	QueueSize     int      `yaml:"queue_size"`
	BatchSize     int      `yaml:"batch_size"`
	BatchTimeout  Duration `yaml:"batch_timeout"`
	ExportTimeout Duration `yaml:"export_timeout"`
	// ServiceName is the service.name resource of the gateway's spans.
	ServiceName string `yaml:"service_name"`
	// Incoming decides what happens to a client's traceparent: trust continues it when the peer
	// is one of TrustedSources, link always starts a new trace and links the client's.
	Incoming TracingIncoming `yaml:"incoming"`
	// TrustedSources are the peers whose trace context is continued under incoming: trust;
	// empty means server.trusted_proxies.
	TrustedSources []CIDR `yaml:"trusted_sources,omitempty"`
}

// RouteTracing is a route's own sampling (routes[].tracing).
type RouteTracing struct {
	// SampleRatio replaces server.tracing.sample_ratio for new traces on this route.
	SampleRatio float64 `yaml:"sample_ratio"`
}

// TracingProtocol is the OTLP transport: server.tracing.protocol.
type TracingProtocol string

// The OTLP transports, named as OTEL_EXPORTER_OTLP_PROTOCOL names them.
const (
	TracingHTTP TracingProtocol = "http/protobuf"
	TracingGRPC TracingProtocol = "grpc"
)

// TracingIncoming is what the gateway does with a client's trace context.
type TracingIncoming string

// The ways to treat an incoming traceparent.
const (
	TracingTrust TracingIncoming = "trust" // continue it from trusted sources, link it otherwise
	TracingLink  TracingIncoming = "link"  // always start a new trace and link it
)

// Defaults of server.tracing: the OpenTelemetry SDK's own (OTLP ports, batch processor sizes,
// the parent-based always-on sampler).
const (
	DefaultTracingHTTPEndpoint = "http://127.0.0.1:4318"
	DefaultTracingGRPCEndpoint = "http://127.0.0.1:4317"
	DefaultTracingProtocol     = TracingHTTP
	DefaultTracingSampleRatio  = 1.0
	DefaultTracingQueueSize    = 2048
	DefaultTracingBatchSize    = 512
	DefaultTracingBatchTimeout = Duration(5e9)
	DefaultTracingExportTimout = Duration(10e9)
	DefaultTracingServiceName  = "archway"
	DefaultTracingIncoming     = TracingTrust
)

var (
	tracingProtocols = []TracingProtocol{TracingHTTP, TracingGRPC}
	tracingIncomings = []TracingIncoming{TracingTrust, TracingLink}
)

// On reports whether tracing is configured and enabled.
func (t *Tracing) On() bool { return t != nil && (t.Enabled == nil || *t.Enabled) }

func (c *Config) applyTracingDefaults() {
	t := c.Server.Tracing
	if t == nil {
		return
	}
	setDefault(&t.Protocol, DefaultTracingProtocol)
	if t.Protocol == TracingGRPC {
		setDefault(&t.Endpoint, DefaultTracingGRPCEndpoint)
	} else {
		setDefault(&t.Endpoint, DefaultTracingHTTPEndpoint)
	}
	if !c.written("server.tracing.sample_ratio") {
		t.SampleRatio = DefaultTracingSampleRatio
	}
	setDefault(&t.QueueSize, DefaultTracingQueueSize)
	setDefault(&t.BatchSize, DefaultTracingBatchSize)
	setDefault(&t.BatchTimeout, DefaultTracingBatchTimeout)
	setDefault(&t.ExportTimeout, DefaultTracingExportTimout)
	setDefault(&t.ServiceName, DefaultTracingServiceName)
	setDefault(&t.Incoming, DefaultTracingIncoming)
}

func (v *validator) tracing() {
	for i, r := range v.c.Routes {
		if r.Tracing == nil {
			continue
		}
		p := fmt.Sprintf("routes[%d].tracing", i)
		if !v.c.Server.Tracing.On() {
			v.errorf(p, "needs server.tracing (route %s)", r.Name)
		}
		v.ratio(p+".sample_ratio", r.Tracing.SampleRatio)
	}
	t := v.c.Server.Tracing
	if t == nil {
		return
	}
	const p = "server.tracing"
	if !slices.Contains(tracingProtocols, t.Protocol) {
		v.errorf(p+".protocol", "must be one of %s, got %q", strings.Join(names(tracingProtocols), ", "), t.Protocol)
	}
	if u, err := url.Parse(t.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errorf(p+".endpoint", "must be an http:// or https:// URL of the collector, got %q", t.Endpoint)
	} else if t.Protocol == TracingGRPC && u.Path != "" && u.Path != "/" {
		v.errorf(p+".endpoint", "a grpc endpoint has no path, got %q", t.Endpoint)
	}
	v.ratio(p+".sample_ratio", t.SampleRatio)
	if t.QueueSize < 1 {
		v.errorf(p+".queue_size", "must be at least 1, got %d", t.QueueSize)
	}
	if t.BatchSize < 1 || t.BatchSize > t.QueueSize {
		v.errorf(p+".batch_size", "must be between 1 and queue_size (%d), got %d", t.QueueSize, t.BatchSize)
	}
	v.positive(p+".batch_timeout", t.BatchTimeout)
	v.positive(p+".export_timeout", t.ExportTimeout)
	if !slices.Contains(tracingIncomings, t.Incoming) {
		v.errorf(p+".incoming", "must be one of %s, got %q", strings.Join(names(tracingIncomings), ", "), t.Incoming)
	}
}

func (v *validator) ratio(path string, r float64) {
	if !(r >= 0 && r <= 1) {
		v.errorf(path, "must be between 0 and 1, got %g", r)
	}
}
