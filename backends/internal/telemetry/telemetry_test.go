package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	"github.com/archway-gateway/archway/backends/internal/reqctx"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

func TestStatement(t *testing.T) {
	cases := []struct{ query, op, table string }{
		{"SELECT id, name FROM products WHERE id = ?", "SELECT", "products"},
		{"select count(*) from orders", "SELECT", "orders"},
		{"INSERT INTO order_items (order_id, product_id) VALUES (?, ?)", "INSERT", "order_items"},
		{"INSERT INTO outbox(id) VALUES (?)", "INSERT", "outbox"},
		{"UPDATE payments SET status = ? WHERE id = ?", "UPDATE", "payments"},
		{"DELETE FROM reservations WHERE order_ref = ?", "DELETE", "reservations"},
		{`SELECT * FROM "users"`, "SELECT", "users"},
		{"WITH due AS (SELECT id FROM orders) UPDATE orders SET x = 1", "UPDATE", "orders"},
		{"SELECT 1", "SELECT", ""},
		{"BEGIN", "BEGIN", ""},
		{"", "", ""},
	}
	for _, c := range cases {
		if op, table := Statement(c.query); op != c.op || table != c.table {
			t.Errorf("%q: %q %q, want %q %q", c.query, op, table, c.op, c.table)
		}
	}
}

// The log handler writes the ids of the span in the record's context, a request's fasthttp
// context included, and nothing without one.
func TestLogHandlerAddsTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("service", "orders")
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 1}, SpanID: trace.SpanID{0xf0, 7}, TraceFlags: trace.FlagsSampled})
	var rc fasthttp.RequestCtx
	reqctx.Attach(&rc, trace.ContextWithSpanContext(context.Background(), sc))
	for _, ctx := range []context.Context{trace.ContextWithSpanContext(context.Background(), sc), &rc} {
		buf.Reset()
		log.InfoContext(ctx, "request")
		var line map[string]any
		if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		if line["trace_id"] != sc.TraceID().String() || line["span_id"] != sc.SpanID().String() || line["service"] != "orders" {
			t.Fatalf("line %s lacks the ids of %v", buf.Bytes(), sc)
		}
	}
	buf.Reset()
	log.InfoContext(context.Background(), "no request")
	if bytes.Contains(buf.Bytes(), []byte("trace_id")) {
		t.Fatalf("a line without a span got ids: %s", buf.Bytes())
	}
}

// Tracing stays off without an endpoint, and with one when the SDK is disabled or the exporter
// is none, as the OpenTelemetry environment specification says.
func TestSetupHonoursTheEnvironment(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		env      map[string]string
		flag     string
		on       bool
		failsBad bool
	}{
		{env: map[string]string{}, on: false},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"}, on: true},
		{env: map[string]string{}, flag: "http://127.0.0.1:9", on: true},
		{env: map[string]string{"OTEL_SDK_DISABLED": "true"}, flag: "http://127.0.0.1:9", on: false},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, on: false},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, flag: "http://127.0.0.1:9", on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, flag: "http://127.0.0.1:9", failsBad: true},
	}
	for i, c := range cases {
		on.Store(false)
		stop, err := Setup(context.Background(), Settings{Service: "orders", Endpoint: c.flag,
			LookupEnv: func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }}, log)
		if c.failsBad {
			if err == nil {
				t.Errorf("case %d: accepted %v", i, c.env)
			}
			continue
		}
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if Enabled() != c.on {
			t.Errorf("case %d (%v, flag %q): tracing on = %v, want %v", i, c.env, c.flag, Enabled(), c.on)
		}
		stop()
	}
	on.Store(false)
}

func TestTraceparent(t *testing.T) {
	if got := Traceparent(context.Background()); got != "" {
		t.Fatalf("no span: %q, want empty", got)
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	if got := Traceparent(ctx); got != tp {
		t.Fatalf("Traceparent = %q, want %q", got, tp)
	}
}
