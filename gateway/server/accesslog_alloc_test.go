//go:build !race

package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestProxiedRequestWithAccessLogAllocatesNothing is TestProxiedRequestAllocatesNothing with
// the access log on, as it is by default, writing to a file: the line's encoding, its copy into
// the log's buffers and the writer goroutine's writes cost no allocation either. The flush
// interval is the default, so buffers go out as they fill and on the tick alike.
func TestProxiedRequestWithAccessLogAllocatesNothing(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "access.log")
	g := newAllocGateway(t, fmt.Sprintf(`
admin: {listen: ""}
access_log: {output: %q}
upstreams:
  products: {targets: ["products.internal:80"]}
routes:
  - name: products
    match: {path_prefix: /api/products}
    strip_prefix: /api
    upstream: products
`, logPath), nil)
	if !g.Config().AccessLog.On() {
		t.Fatal("the access log is not on by default")
	}
	d := newRequestDriver(benchRequest)
	const warm, runs = fasthttpBodyPoolCalibration, 2000
	allocs := d.steadyAllocs(t, g.entry.Handle, 200, warm, runs)
	if allocs != 0 {
		t.Fatalf("a proxied request with the access log on allocates %.2f times in steady state, want 0", allocs)
	}

	// The lines are there: every request's, whole, with the request's fields.
	l := g.Snapshot().AccessLog
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d: %v: %q", lines+1, err, sc.Bytes())
		}
		if m["path"] != "/api/products/42" || m["query"] != "sort=price" || m["client_ip"] != "203.0.113.7" || m["status"] != 200.0 {
			t.Fatalf("line %d: %v", lines+1, m)
		}
		lines++
	}
	// AllocsPerRun runs the function once more to warm up.
	if total := uint64(lines) + l.Dropped(); total != warm+runs+1 {
		t.Errorf("%d lines written + %d dropped, want %d", lines, l.Dropped(), warm+runs+1)
	}
}
