//go:build !race

package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// TestProxiedRequestWithAccessLogAllocatesNothing is TestProxiedRequestAllocatesNothing with
// the access log on, as it is by default, writing to a file: the line's encoding, its copy into
// the log's buffers and the writer goroutine's writes cost no allocation either. The flush
// interval is the default, so buffers go out as they fill and on the tick alike.
func TestProxiedRequestWithAccessLogAllocatesNothing(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "access.log")
	ln := fasthttputil.NewInmemoryListener()
	up := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(kilobyteJSON)
	}}
	go func() { _ = up.Serve(ln) }()
	defer func() { _ = up.Shutdown(); _ = ln.Close() }()
	cfg, err := config.Parse(fmt.Appendf(nil, `
admin: {listen: ""}
access_log: {output: %q}
upstreams:
  products: {targets: ["products.internal:80"]}
routes:
  - name: products
    match: {path_prefix: /api/products}
    strip_prefix: /api
    upstream: products
`, logPath), "alloc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.AccessLog.On() {
		t.Fatal("the access log is not on by default")
	}
	g, err := New(cfg, Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Dial:   func(string, time.Duration) (net.Conn, error) { return ln.Dial() },
	})
	if err != nil {
		t.Fatal(err)
	}
	d := newRequestDriver(benchRequest)
	const warm, runs = 45000, 2000
	for range warm {
		if code := d.run(t, g); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	allocs := testing.AllocsPerRun(runs, func() { d.run(t, g) })
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
