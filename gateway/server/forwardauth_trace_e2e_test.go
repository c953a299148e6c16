package server_test

import (
	"fmt"
	"testing"

	"github.com/archway-gateway/archway/internal/testenv"
)

// authTraceparent is the trace id, span id and flags of the traceparent the auth service's last
// check carried.
func authTraceparent(t *testing.T, auth *upstreamServer) (tid, sid, flags string) {
	t.Helper()
	return upstreamTraceparent(t, auth)
}

// TestForwardAuthCarriesTrace: forward_auth's check is part of the request's trace. Sampled,
// the auth service gets the traceparent of a client span of its own, a child of the request's
// server span and a sibling of the upstream attempt's span, and Jaeger holds it; sampled out,
// it gets the gateway's id with the sampled flag off, as the upstream does. A continued trace's
// tracestate reaches it too, and the client's own traceparent never does.
func TestForwardAuthCarriesTrace(t *testing.T) {
	j := testenv.StartJaeger(t)
	auth := startUpstream(t, "auth", nil) // answers 200: allowed
	app := startUpstream(t, "app", nil)
	_, withTable := withPolicies(t)
	gw := startGateway(t, fmt.Sprintf(`
admin: {listen: ""}
server:
  tracing: {endpoint: %q, batch_timeout: 100ms, trusted_sources: ["127.0.0.1/32"]}
upstreams:
  app: {targets: [%q]}
routes:
  - name: guarded
    match: {path_prefix: /guarded}
    upstream: app
    forward_auth: {url: "http://%s/auth/verify"}
  - name: quiet
    match: {path_prefix: /quiet}
    upstream: app
    forward_auth: {url: "http://%s/auth/verify"}
    tracing: {sample_ratio: 0}
`, j.OTLPHTTP, app.Addr, auth.Addr, auth.Addr), withTable)

	const clientTrace, clientSpan = "5bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	expectStatus(t, get(t, gw.URL+"/guarded/x", "traceparent", "00-"+clientTrace+"-"+clientSpan+"-01", "tracestate", "vendor=opaque"), 200)
	atid, asid, aflags := authTraceparent(t, auth)
	utid, usid, _ := upstreamTraceparent(t, app)
	if atid != clientTrace || aflags != "01" || asid == clientSpan || asid == usid || utid != clientTrace {
		t.Fatalf("auth check got %s-%s-%s, upstream %s-%s: want trace %s continued, a span of the check's own", atid, asid, aflags, utid, usid, clientTrace)
	}
	if ts := auth.last(t).Headers["Tracestate"]; len(ts) != 1 || ts[0] != "vendor=opaque" {
		t.Errorf("auth check tracestate %q, want the continued trace's", ts)
	}
	flushTraces(t, gw)
	tr := jaegerTrace(t, j, clientTrace, 3)
	byID := map[string]testenv.JaegerSpan{}
	for _, sp := range tr.Spans {
		byID[sp.SpanID] = sp
	}
	check, ok := byID[asid]
	if !ok {
		t.Fatalf("the auth check's span %s is not in the trace: %+v", asid, tr.Spans)
	}
	server, ok := byID[check.Parent()]
	if !ok || spanKind(server) != "server" || spanKind(check) != "client" {
		t.Fatalf("the auth check's span (kind %s) has parent %s, want the server span", spanKind(check), check.Parent())
	}
	if attempt, ok := byID[usid]; !ok || attempt.Parent() != server.SpanID {
		t.Errorf("the upstream attempt's span is not the check's sibling under the server span")
	}
	if v, _ := check.Tag("archway.subrequest"); v != "forward_auth" {
		t.Errorf("the check's span archway.subrequest = %v", v)
	}
	if v, _ := check.Tag("http.response.status_code"); fmt.Sprint(v) != "200" {
		t.Errorf("the check's span status %v, want 200", v)
	}

	// Sampled out: the check and the upstream get the same unsampled context.
	expectStatus(t, get(t, gw.URL+"/quiet"), 200)
	atid, asid, aflags = authTraceparent(t, auth)
	utid, usid, uflags := upstreamTraceparent(t, app)
	if aflags != "00" || uflags != "00" || atid != utid || asid != usid {
		t.Errorf("sampled out: auth check got %s-%s-%s, upstream %s-%s-%s; want the same unsampled context", atid, asid, aflags, utid, usid, uflags)
	}
}
