//go:build !race

// Allocation counts are only meaningful without the race detector, which makes sync.Pool drop
// objects on purpose; `make test` runs these in a separate pass without -race.

package accesslog

import (
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"
)

// TestLogAllocatesNothing: a line with every field, escapes and an error costs no allocation,
// the copy into the shared buffer and the writer's side included.
func TestLogAllocatesNothing(t *testing.T) {
	l := New(io.Discard, Options{Buffer: MinBuffer, Flush: time.Millisecond})
	defer l.Close()
	e := &Entry{RequestID: []byte("0af7651916cd43dd8448eb211c80319c"), ClientIP: netip.MustParseAddr("2001:db8::7"),
		Method: []byte("GET"), Path: []byte("/api/products/42"), Query: []byte("sort=price&token=secret"),
		Route: "products", Upstream: "products", Target: "127.0.0.1:3002", Status: 502, BytesOut: 1093,
		Duration: 1234 * time.Microsecond, UpstreamTime: 987 * time.Microsecond, Attempts: 2,
		UserAgent: []byte("Mozilla/5.0 \"é\" \u2028"), Referer: []byte("https://shop.example.com/"),
		Err: errors.New("upstream refused the connection")}
	for range 1000 {
		l.Log(e)
	}
	if allocs := testing.AllocsPerRun(5000, func() { l.Log(e) }); allocs != 0 {
		t.Fatalf("logging a request allocates %.2f times, want 0", allocs)
	}
}
