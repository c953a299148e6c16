// Package telemetry is the services' OpenTelemetry tracing: the SDK set up from the standard
// OTEL_* environment variables (and a flag), server spans for every request, client spans for
// calls to other services, database spans, and the trace and span ids on every log line written
// with the request's context.
//
// Tracing is off unless an OTLP endpoint is given (-otlp-endpoint, OTEL_EXPORTER_OTLP_ENDPOINT
// or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), and off whatever else says so when OTEL_SDK_DISABLED
// is true or OTEL_TRACES_EXPORTER is none. Off, the global tracer provider is OpenTelemetry's
// no-op one and the helpers here return at their first check.
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// instrumentation names the spans' source in every backend.
const instrumentation = "github.com/archway-gateway/archway/backends"

// on is set once Setup installed a real tracer provider.
var on atomic.Bool

// Enabled reports whether this process exports traces.
func Enabled() bool { return on.Load() }

// Tracer is the tracer every helper here starts spans with: the global provider's, so it
// follows Setup.
func Tracer() trace.Tracer { return otel.Tracer(instrumentation) }

// Settings are what Start reads besides the environment.
type Settings struct {
	// Service is the service.name unless OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) names
	// another.
	Service string
	// Endpoint is the -otlp-endpoint flag: the collector's base URL (http://host:4318, or
	// http://host:4317 with grpc). Empty leaves it to the OTEL_EXPORTER_OTLP_* variables.
	Endpoint string
	// LookupEnv reads the environment; os.LookupEnv when nil.
	LookupEnv func(string) (string, bool)
}

// Setup sets up tracing for the process as the settings and the OTEL_* variables say, and
// returns the function that flushes and stops it (a no-op when tracing is off). It installs
// the W3C Trace Context propagator in any case, so an incoming trace id still reaches the logs.
func Setup(ctx context.Context, s Settings, log *slog.Logger) (stop func(), err error) {
	env := s.LookupEnv
	if env == nil {
		env = os.LookupEnv
	}
	get := func(k string) string { v, _ := env(k); return strings.TrimSpace(v) }
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	noop := func() {}
	if strings.EqualFold(get("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(get("OTEL_TRACES_EXPORTER"), "none") {
		return noop, nil
	}
	endpoint := s.Endpoint
	envEndpoint := get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || get("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
	if endpoint == "" && !envEndpoint {
		return noop, nil
	}
	protocol := get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = get("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	exp, err := newExporter(ctx, protocol, endpoint)
	if err != nil {
		return nil, err
	}
	// Service first, then the environment's resource, so OTEL_SERVICE_NAME wins over it.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", s.Service)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	// No WithSampler: the SDK reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG itself
	// (parentbased_always_on by default). Our batcher reads OTEL_BSP_* and counts its drops.
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(newBatcher(exp, readBatchSettings(get), &counts)), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	on.Store(true)
	log.InfoContext(ctx, "tracing on", "protocol", protocolName(protocol), "endpoint", describe(endpoint, get))
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.WarnContext(ctx, "tracing shutdown", "error", err.Error())
		}
	}, nil
}

func protocolName(p string) string {
	if p == "" {
		return "http/protobuf"
	}
	return p
}

func describe(flag string, get func(string) string) string {
	for _, v := range []string{flag, get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), get("OTEL_EXPORTER_OTLP_ENDPOINT")} {
		if v != "" {
			if u, err := url.Parse(v); err == nil {
				u.User = nil
				return u.String()
			}
			return "(unparsable)"
		}
	}
	return ""
}

// newExporter makes the OTLP exporter of protocol. The exporters read the OTEL_EXPORTER_OTLP_*
// variables themselves (endpoint, headers, timeout, certificates); a flag endpoint overrides
// theirs.
func newExporter(ctx context.Context, protocol, endpoint string) (sdktrace.SpanExporter, error) {
	switch protocol {
	case "grpc":
		var opts []otlptracegrpc.Option
		if endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint))
		}
		return otlptrace.New(ctx, otlptracegrpc.NewClient(opts...))
	case "", "http/protobuf":
		var opts []otlptracehttp.Option
		if endpoint != "" {
			u, err := url.Parse(endpoint)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, fmt.Errorf("otlp endpoint %q: want http://host:port", endpoint)
			}
			if u.Path == "" || u.Path == "/" {
				u.Path = "/v1/traces" // a base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is
			}
			opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
		}
		return otlptrace.New(ctx, otlptracehttp.NewClient(opts...))
	}
	return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: want http/protobuf or grpc", protocol)
}
