package server_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/gateway/server"
	"github.com/prometheus/client_golang/prometheus"
)

// TestAccessLogDropsAreAMetric: a line longer than the access log's buffer is dropped, and the
// drop shows in archway_access_log_dropped_total; a reload to another output keeps the count
// (the replaced log's drops stay in the counter) and adds the new log's.
func TestAccessLogDropsAreAMetric(t *testing.T) {
	dir := t.TempDir()
	yaml := func(out string) string {
		return fmt.Sprintf(`
admin: {listen: ""}
server: {max_header_bytes: 64KiB}
access_log: {output: %q, buffer: 4KiB}
upstreams:
  unused: {targets: ["127.0.0.1:9"]}
routes:
  - name: ok
    match: {path_prefix: /}
    respond: {status: 200, body: "ok"}
`, filepath.Join(dir, out))
	}
	reg := prometheus.NewRegistry()
	gw := startGateway(t, yaml("a.log"), func(o *server.Options) { o.Registerer = reg })
	const name = "archway_access_log_dropped_total"
	if v := metricValue(t, reg, name); v != 0 {
		t.Fatalf("%s = %v before any request", name, v)
	}
	long := strings.Repeat("x", 5000) // the User-Agent alone is longer than the 4 KiB buffer
	expectStatus(t, get(t, gw.URL+"/", "User-Agent", long), 200)
	expectStatus(t, get(t, gw.URL+"/"), 200) // a short line is written, not dropped
	if v := metricValue(t, reg, name); v != 1 {
		t.Fatalf("%s = %v after one over-long line, want 1", name, v)
	}
	if _, err := gw.Apply(mustParse(t, yaml("b.log")), "test"); err != nil {
		t.Fatal(err)
	}
	if v := metricValue(t, reg, name); v != 1 {
		t.Fatalf("%s = %v after a reload to another output, want the old log's 1 kept", name, v)
	}
	expectStatus(t, get(t, gw.URL+"/", "User-Agent", long), 200)
	if v := metricValue(t, reg, name); v != 2 {
		t.Fatalf("%s = %v after an over-long line on the new log, want 2", name, v)
	}
}
