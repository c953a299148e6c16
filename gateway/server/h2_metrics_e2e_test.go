package server_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestHTTP2MetricsCountConnectionsAndStreams: archway_http2_connections follows the clients'
// HTTP/2 connections over h2c and TLS, and archway_http2_streams_total{outcome="completed"}
// counts every stream answered. (Resets and refusals are counted in gateway/h2's tests, with a
// raw framer that can send them.)
func TestHTTP2MetricsCountConnectionsAndStreams(t *testing.T) {
	app := startHTTPUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "ok")
	})
	g := startH2Gateway(t, "", fmt.Sprintf(`
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: api, match: {path_prefix: /api/}, upstream: app}
`, app))
	metric := func(name, outcome string) float64 {
		want := map[string]string{}
		if outcome != "" {
			want["outcome"] = outcome
		}
		return g.counter(t, name, want)
	}
	if n := metric("archway_http2_connections", ""); n != 0 {
		t.Fatalf("%v connections before any client", n)
	}
	get := func(c *http.Client, url string) {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("%s %d", resp.Proto, resp.StatusCode)
		}
	}
	for range 3 {
		get(g.h2c, "http://"+g.plain+"/api/x")
	}
	for range 2 {
		get(g.h2tls, "https://"+g.tls+"/api/x")
	}
	// Counted before each response left, so no waiting here.
	if n := metric("archway_http2_streams_total", "completed"); n != 5 {
		t.Errorf("%v streams completed, want 5", n)
	}
	if n := metric("archway_http2_streams_total", "reset") + metric("archway_http2_streams_total", "refused"); n != 0 {
		t.Errorf("%v streams reset or refused, want 0", n)
	}
	if n := metric("archway_http2_connections", ""); n != 2 {
		t.Errorf("%v connections open, want 2 (one per client)", n)
	}
	g.h2c.CloseIdleConnections()
	g.h2tls.CloseIdleConnections()
	// The server sees the close on its own goroutine; the bound only ends a test that would hang.
	for deadline := time.Now().Add(30 * time.Second); metric("archway_http2_connections", "") != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the closed connections are still counted")
		}
	}
}
