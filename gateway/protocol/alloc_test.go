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

// keepAliveExchange is what a typical keep-alive client sends: a GET, a POST with a JSON body,
// and a chunked upload with a trailer.
var keepAliveExchange = []byte("GET /api/products?page=2 HTTP/1.1\r\nHost: shop.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: application/json\r\nAccept-Encoding: gzip, br\r\n" +
	"Cookie: session=4f1c2a; theme=dark\r\nX-Request-ID: 7d9f2c1e\r\n\r\n" +
	"POST /api/orders HTTP/1.1\r\nHost: shop.example.com\r\nContent-Type: application/json\r\n" +
	"Content-Length: 27\r\nAuthorization: Bearer eyJhbGciOiJFUzI1NiJ9.e30.sig\r\n\r\n" +
	`{"product":1,"quantity":2}` + "\n" +
	"PUT /api/uploads/7 HTTP/1.1\r\nHost: shop.example.com\r\nTransfer-Encoding: chunked\r\n\r\n" +
	"10\r\n0123456789abcdef\r\n4;last\r\nwxyz\r\n0\r\nDigest: x\r\n\r\n")

func TestConnScanAllocatesNothing(t *testing.T) {
	c := newConn(&repeatConn{req: keepAliveExchange})
	buf := make([]byte, 4096)
	allocs := testing.AllocsPerRun(1000, func() { _, _ = c.Read(buf) })
	if allocs != 0 || c.state != stSkip {
		t.Fatalf("the head scanner allocates %.1f times per exchange (state %d)", allocs, c.state)
	}
}

// BenchmarkConnScan: the scanner's cost on a typical keep-alive exchange of three requests.
func BenchmarkConnScan(b *testing.B) {
	c := newConn(&repeatConn{req: keepAliveExchange})
	buf := make([]byte, 4096)
	b.SetBytes(int64(len(keepAliveExchange)))
	b.ReportAllocs()
	for b.Loop() {
		_, _ = c.Read(buf)
	}
	if c.state != stSkip {
		b.Fatalf("state %d after the exchange", c.state)
	}
}
