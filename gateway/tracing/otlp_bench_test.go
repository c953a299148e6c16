package tracing

import (
	"net/netip"
	"testing"
	"time"
)

// gatewayRecords are n spans shaped like the gateway's: a server span with the attributes a
// proxied GET has and a client span under it, by pairs.
func gatewayRecords(n int) []*Span {
	var none *Tracer
	recs := make([]*Span, 0, n)
	for i := 0; len(recs) < n; i++ {
		start := time.Now()
		s := none.StartSpan(KindServer, start)
		s.TraceID, s.SpanID = NewTraceID(), NewSpanID()
		s.SetName("GET", "products")
		s.AddString("http.request.method", "GET")
		s.AddString("url.path", "/api/products/12345")
		s.AddString("url.scheme", "http")
		s.AddString("server.address", "shop.example.com")
		s.AddAddr("client.address", netip.MustParseAddr("203.0.113.7"))
		s.AddAddr("network.peer.address", netip.MustParseAddr("10.0.0.7"))
		s.AddString("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36")
		s.AddString("network.protocol.version", "1.1")
		s.AddString("archway.request_id", "7f9c2ba4e88f827d616045507605853e")
		s.AddInt("http.response.status_code", 200)
		s.AddString("archway.route", "products")
		s.AddString("archway.upstream", "products")
		s.AddString("archway.target", "10.0.1.5:8080")
		s.AddInt("archway.attempts", 1)
		s.EndTime = s.StartTime + 30_000
		c := none.StartSpan(KindClient, start)
		c.TraceID, c.SpanID, c.Parent = s.TraceID, NewSpanID(), s.SpanID
		c.SetName("GET", "")
		c.AddString("http.request.method", "GET")
		c.AddString("server.address", "10.0.1.5:8080")
		c.AddInt("http.request.resend_count", 0)
		c.AddString("url.path", "/products/12345")
		c.AddInt("http.response.status_code", 200)
		c.EndTime = c.StartTime + 20_000
		recs = append(recs, s, c)
	}
	return recs[:n]
}

// BenchmarkAppendRequest is the export goroutine's encoding of one batch of 512 spans shaped
// like the gateway's (reported per span).
func BenchmarkAppendRequest(b *testing.B) {
	enc := newEncoder("archway")
	recs := gatewayRecords(512)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = enc.appendRequest(buf[:0], recs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/span")
	b.SetBytes(int64(len(buf)))
}
