//go:build !race

// Allocation counts are only meaningful without the race detector, which makes sync.Pool drop
// objects on purpose; `make test` runs these in a separate pass without -race.

package protocol

import "testing"

func TestNormalizePathAllocatesNothing(t *testing.T) {
	raw := []byte("/api/products/../orders//42/%7Eitems")
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(1000, func() {
		buf, _ = NormalizePath(buf[:0], raw, false)
	})
	if allocs != 0 {
		t.Fatalf("NormalizePath allocates %.1f times per call", allocs)
	}
}

func TestScanHeadersAllocatesNothing(t *testing.T) {
	raw := []byte("Host: example.com\r\nConnection: keep-alive, X-Secret\r\nX-Forwarded-For: 1.1.1.1\r\n" +
		"X-Request-ID: abc-123\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n")
	var f HeaderFacts
	allocs := testing.AllocsPerRun(1000, func() { _ = ScanHeaders(raw, &f) })
	if allocs != 0 {
		t.Fatalf("ScanHeaders allocates %.1f times per call", allocs)
	}
}

// repeatConn returns the same request on every read, as a keep-alive client would send it.
type repeatConn struct {
	feedConn
	req []byte
}

func (r *repeatConn) Read(p []byte) (int, error) { return copy(p, r.req), nil }

func TestConnScanAllocatesNothing(t *testing.T) {
	c := &Conn{Conn: &repeatConn{req: []byte("POST /api/orders HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\n{}")}}
	buf := make([]byte, 4096)
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = c.Read(buf)
		c.RequestDone(2, false)
	})
	if allocs != 0 || c.state != headSkip {
		t.Fatalf("the head scanner allocates %.1f times per request (state %d)", allocs, c.state)
	}
}
