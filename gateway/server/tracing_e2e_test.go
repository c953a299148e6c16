package server_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
)

var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$`)

// upstreamTraceparent returns the trace id, span id and flags of the traceparent the upstream's
// last request carried.
func upstreamTraceparent(t *testing.T, u *upstreamServer) (tid, sid, flags string) {
	t.Helper()
	got := u.last(t).Headers["Traceparent"]
	if len(got) != 1 {
		t.Fatalf("upstream got traceparent %q, want exactly one", got)
	}
	m := traceparentRE.FindStringSubmatch(got[0])
	if m == nil {
		t.Fatalf("upstream got traceparent %q", got[0])
	}
	return m[1], m[2], m[3]
}

// jaegerTrace waits until Jaeger has the trace with at least n spans.
func jaegerTrace(t *testing.T, j *testenv.Jaeger, id string, n int) testenv.JaegerTrace {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		tr, err := j.Trace(id)
		if err == nil && len(tr.Spans) >= n {
			return tr
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s: %d spans after 30 s (%v), want %d", id, len(tr.Spans), err, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func spanKind(sp testenv.JaegerSpan) string { v, _ := sp.Tag("span.kind"); return fmt.Sprint(v) }

func flushTraces(t *testing.T, gw *gateway) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := gw.Snapshot().Tracer.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTracingThroughJaeger drives the gateway's trace context rules against a real Jaeger: a
// trusted client's context is continued (tracestate with it) and the upstream gets the client
// span's id; under incoming: link the client's trace is only linked and its tracestate dropped;
// a failed attempt and its repeat are two client spans of one server span; a route sampled at 0
// forwards an unsampled traceparent and exports nothing.
func TestTracingThroughJaeger(t *testing.T) {
	j := testenv.StartJaeger(t)
	app := startUpstream(t, "app", nil)
	dead := testenv.FreeAddr(t) // refuses connections: the attempt fails over
	gw := startGateway(t, fmt.Sprintf(`
admin: {listen: ""}
server:
  tracing: {endpoint: %q, batch_timeout: 100ms, trusted_sources: ["127.0.0.1/32"]}
upstreams:
  app: {targets: [%q]}
  flaky: {targets: [%q, %q], balance: round_robin, max_fails: 0}
routes:
  - {name: app, match: {path_prefix: /app}, upstream: app}
  - {name: flaky, match: {path_prefix: /flaky}, upstream: flaky}
  - {name: quiet, match: {path_prefix: /quiet}, upstream: app, tracing: {sample_ratio: 0}}
`, j.OTLPHTTP, app.Addr, dead, app.Addr))
	linking := startGateway(t, fmt.Sprintf(`
admin: {listen: ""}
server:
  tracing: {endpoint: %q, batch_timeout: 100ms, incoming: link, trusted_sources: ["127.0.0.1/32"]}
upstreams:
  app: {targets: [%q]}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`, j.OTLPHTTP, app.Addr))

	// A route sampled at 0: the upstream still gets a traceparent, unsampled.
	expectStatus(t, get(t, gw.URL+"/quiet"), 200)
	quietTrace, _, flags := upstreamTraceparent(t, app)
	if flags != "00" {
		t.Errorf("sampled-out route forwarded flags %s, want 00", flags)
	}

	// Trusted: continued.
	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	expectStatus(t, get(t, gw.URL+"/app/x", "traceparent", "00-"+clientTrace+"-"+clientSpan+"-01", "tracestate", "vendor=opaque"), 200)
	tid, sid, flags := upstreamTraceparent(t, app)
	if tid != clientTrace || sid == clientSpan || flags != "01" {
		t.Fatalf("trusted context: upstream got %s %s %s, want trace %s continued", tid, sid, flags, clientTrace)
	}
	if ts := app.last(t).Headers["Tracestate"]; len(ts) != 1 || ts[0] != "vendor=opaque" {
		t.Errorf("tracestate of a continued trace: upstream got %q", ts)
	}
	flushTraces(t, gw)
	tr := jaegerTrace(t, j, clientTrace, 2)
	var server, clientSp *testenv.JaegerSpan
	for i := range tr.Spans {
		switch spanKind(tr.Spans[i]) {
		case "server":
			server = &tr.Spans[i]
		case "client":
			clientSp = &tr.Spans[i]
		}
	}
	if server == nil || clientSp == nil {
		t.Fatalf("want a server and a client span, got %+v", tr.Spans)
	}
	if server.Parent() != clientSpan || clientSp.Parent() != server.SpanID || clientSp.SpanID != sid {
		t.Errorf("links: server %s (parent %s), client %s (parent %s), upstream saw %s", server.SpanID, server.Parent(), clientSp.SpanID, clientSp.Parent(), sid)
	}
	if v, _ := server.Tag("archway.route"); v != "app" {
		t.Errorf("server span route %v", v)
	}
	// The sampled-out request, sent first and on the same queue, left nothing.
	if q, err := j.Trace(quietTrace); err == nil && len(q.Spans) > 0 {
		t.Errorf("a request sampled out was exported: %+v", q.Spans)
	}

	// incoming: link starts a new trace, links the client's, drops its tracestate.
	const linkedTrace = "0af7651916cd43dd8448eb211c80319c"
	expectStatus(t, get(t, linking.URL+"/y", "traceparent", "00-"+linkedTrace+"-b7ad6b7169203331-01", "tracestate", "vendor=opaque"), 200)
	tid, _, _ = upstreamTraceparent(t, app)
	if tid == linkedTrace {
		t.Fatal("incoming: link continued the client's trace")
	}
	if ts := app.last(t).Headers["Tracestate"]; len(ts) != 0 {
		t.Errorf("a new trace carried the client's tracestate %q", ts)
	}
	flushTraces(t, linking)
	tr = jaegerTrace(t, j, tid, 2)
	linked := false
	for _, sp := range tr.Spans {
		for _, r := range sp.References {
			if r.TraceID == linkedTrace && r.SpanID == "b7ad6b7169203331" && r.RefType == "FOLLOWS_FROM" {
				linked = spanKind(sp) == "server"
			}
		}
	}
	if !linked {
		t.Errorf("the new trace does not link the client's: %+v", tr.Spans)
	}

	// A failed attempt and the one that followed: two client spans under one server span.
	found := false
	for i := range 2 { // round robin: one of two requests meets the dead target first
		trace := fmt.Sprintf("%032x", i+1)
		expectStatus(t, get(t, gw.URL+"/flaky", "traceparent", "00-"+trace+"-00f067aa0ba902b7-01"), 200)
		flushTraces(t, gw)
		tr := jaegerTrace(t, j, trace, 2)
		var clients []string
		for _, sp := range tr.Spans {
			if spanKind(sp) == "client" {
				et, _ := sp.Tag("error.type")
				clients = append(clients, fmt.Sprint(et))
			}
		}
		if len(clients) == 2 {
			found = true
			if !strings.Contains(strings.Join(clients, ","), "<nil>") || clients[0] == clients[1] {
				t.Errorf("two attempts, want one failed and one not: error types %v", clients)
			}
		}
	}
	if !found {
		t.Error("no request met the dead target first: no trace with two attempts")
	}
}
