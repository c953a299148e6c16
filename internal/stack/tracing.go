package stack

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// Jaeger's ports in `make run-tracing`: its defaults (OTLP 4318 and 4317, the UI and query API
// on 16686, query gRPC on 16685).
const (
	JaegerOTLPHTTP  = 4318
	JaegerOTLPGRPC  = 4317
	JaegerUI        = 16686
	JaegerQueryGRPC = 16685
)

// jaegerConfig is Jaeger's all-in-one pipeline on loopback with in-memory storage, without the
// legacy receivers, the sampling server and the self-metrics port.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    traces:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%[3]d
    grpc:
      endpoint: 127.0.0.1:%[4]d
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%[2]d
      http:
        endpoint: 127.0.0.1:%[1]d
processors:
  batch:
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// JaegerConfig is the configuration of a Jaeger (bin/jaeger --config) like `make run-tracing`'s
// on the given loopback ports; the benchmark's tracing scenario and the tests run their
// collectors with it.
func JaegerConfig(otlpHTTP, otlpGRPC, query, queryGRPC int) []byte {
	return fmt.Appendf(nil, jaegerConfig, otlpHTTP, otlpGRPC, query, queryGRPC)
}

// jaegerService is bin/jaeger with its configuration written into the data directory.
func (o Options) jaegerService() (Service, error) {
	cfg := filepath.Join(o.DataDir, "jaeger.yaml")
	data := JaegerConfig(JaegerOTLPHTTP, JaegerOTLPGRPC, JaegerUI, JaegerQueryGRPC)
	if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
		return Service{}, err
	}
	if err := os.WriteFile(cfg, data, 0o644); err != nil {
		return Service{}, fmt.Errorf("jaeger config: %w", err)
	}
	// Its own SDK off: Jaeger would trace itself into the collector it is.
	return Service{Name: "jaeger", Binary: filepath.Join(o.BinDir, "jaeger"), Args: []string{"--config", cfg},
		Env:  []string{"OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true"},
		Addr: addr(JaegerUI), Health: "/api/services"}, nil
}

// otlpEndpoint is where the stack's processes send traces, or "" when tracing is off.
func (o Options) otlpEndpoint() string {
	if o.OTLPEndpoint != "" {
		return o.OTLPEndpoint
	}
	if o.Jaeger {
		return fmt.Sprintf("http://%s", addr(JaegerOTLPHTTP))
	}
	return ""
}

// withTracing turns tracing on in every process when the stack has a collector: the gateway
// through the environment references of routes.yaml's server.tracing, the services through
// OpenTelemetry's own variables. Everything is sampled: it is a development stack.
func (o Options) withTracing(groups [][]Service) [][]Service {
	endpoint := o.otlpEndpoint()
	if endpoint == "" {
		return groups
	}
	for _, g := range groups {
		for i := range g {
			s := &g[i]
			switch {
			case s.Name == "gateway":
				s.Env = append(s.Env, "ARCHWAY_TRACING=true", "ARCHWAY_OTLP_ENDPOINT="+endpoint)
			case slices.Contains([]string{"users", "products", "orders", "payments"}, filepath.Base(s.Binary)):
				s.Env = append(s.Env, "OTEL_EXPORTER_OTLP_ENDPOINT="+endpoint, "OTEL_TRACES_SAMPLER=parentbased_always_on")
			}
		}
	}
	return groups
}
