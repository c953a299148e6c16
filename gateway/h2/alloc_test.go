//go:build !race

package h2

import (
	"bufio"
	"io"
	"net/http"
	"testing"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestStreamHeadAllocatesNothing: turning a stream's request into the fasthttp request the
// gateway serves reuses the pooled stream's buffers.
func TestStreamHeadAllocatesNothing(t *testing.T) {
	r := &http.Request{Method: http.MethodGet, RequestURI: "/api/products/?page=2", Host: "shop.example",
		Header: http.Header{"Accept": {"application/json"}, "User-Agent": {"h2load nghttp2/1.64.0"},
			"Accept-Encoding": {"gzip, deflate"}}, Body: http.NoBody}
	st := &stream{}
	run := func() {
		st.ctx.Request.Reset()
		if err := st.readHead(r, 16<<10); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if string(st.ctx.Request.Header.Peek("User-Agent")) != "h2load nghttp2/1.64.0" || string(st.ctx.Request.Host()) != "shop.example" {
		t.Fatalf("head %q", st.ctx.Request.Header.Header())
	}
	if allocs := testing.AllocsPerRun(1000, run); allocs != 0 {
		t.Fatalf("a stream's request head allocates %.1f times, want 0", allocs)
	}
}

// TestResponseHeadAllocatesTwice: a response's head becomes x/net/http2's header map in two
// allocations whatever the number of fields (one string holds every value, one array every
// field's slice): the map outlives the handler, so it cannot be pooled memory. Per field it
// was two.
func TestResponseHeadAllocatesTwice(t *testing.T) {
	var resp fasthttp.Response
	resp.Header.SetContentType("application/json")
	resp.Header.Set("X-Request-Id", "8c1e0b5a3f2d4e6f")
	resp.Header.Set("Server", "products")
	resp.Header.Set("Cache-Control", "no-store")
	resp.Header.Set("Vary", "Accept-Encoding")
	resp.Header.Set("Date", "Mon, 01 Jan 2001 00:00:00 GMT")
	resp.SetBodyRaw(make([]byte, 1024))
	rec := &headRecorder{h: http.Header{}}
	req := &http.Request{Method: http.MethodGet}
	st := &stream{buf: make([]byte, 32<<10)}
	run := func() {
		clear(rec.h)
		rec.body = rec.body[:0]
		writeResponse(rec, req, &resp, st)
	}
	run()
	if len(rec.h) != 7 || len(rec.body) != 1024 {
		t.Fatalf("head %q, %d bytes", rec.h, len(rec.body))
	}
	if allocs := testing.AllocsPerRun(1000, run); allocs > 2 {
		t.Fatalf("a response head of 7 fields allocates %.1f times, want at most 2", allocs)
	}
}

// BenchmarkResponseHead is the response side of the bridge for the benchmark's GET /plain
// (1 KiB of JSON; Content-Type and X-Request-Id, Content-Length and Date added).
func BenchmarkResponseHead(b *testing.B) {
	var resp fasthttp.Response
	resp.Header.SetContentType("application/json")
	resp.Header.Set("X-Request-Id", "8c1e0b5a3f2d4e6f8c1e0b5a3f2d4e6f")
	resp.SetBodyRaw(make([]byte, 1024))
	rec := &headRecorder{h: http.Header{}}
	req := &http.Request{Method: http.MethodGet}
	st := &stream{buf: make([]byte, 32<<10)}
	b.ReportAllocs()
	for b.Loop() {
		rec.h = http.Header{} // x/net/http2 makes one per stream
		rec.body = rec.body[:0]
		writeResponse(rec, req, &resp, st)
	}
}

// BenchmarkRequestHead is the request side of the bridge: h2load's GET as fasthttp's request.
func BenchmarkRequestHead(b *testing.B) {
	r := &http.Request{Method: http.MethodGet, RequestURI: "/plain", Host: "localhost:8443",
		Header: http.Header{"User-Agent": {"h2load nghttp2/1.64.0"}}, Body: http.NoBody}
	st := &stream{}
	b.ReportAllocs()
	for b.Loop() {
		st.ctx.Request.Reset()
		if err := st.readHead(r, 16<<10); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNativeStreamAllocations: a GET served by the native engine over a real socket, from
// HEADERS to the response's last frame, allocates twice: the HeadersFrame x/net's Framer
// returns, and the stream's goroutine's start. The stream, its fasthttp request, the decoded
// fields, the head, the response encoding and the output buffer are reused. The client here
// allocates nothing: it writes a header block of indexed fields and reads frames by their
// headers. (The bridge to x/net allocated about 40 times per stream.)
func TestNativeStreamAllocations(t *testing.T) {
	body := []byte(`{"ok":true}`)
	s := testSettings
	s.Engine = EngineNative
	addr, _ := serveH2CWith(t, s, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.Response.Header.Set("X-Request-Id", "8c1e0b5a3f2d4e6f")
		ctx.SetBody(body)
	})
	c := dialRaw(t, addr)
	br := bufio.NewReaderSize(c.conn, 64<<10)
	var hdr [9]byte
	payload := make([]byte, 64<<10)
	id := uint32(1)
	run := func() {
		c.hbuf.Reset() // the fields are indexed from the second stream on
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "test"}, {":path", "/plain"}, {"user-agent", "h2load"}} {
			_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				t.Fatal(err)
			}
			n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
			if _, err := io.ReadFull(br, payload[:n]); err != nil {
				t.Fatal(err)
			}
			sid := uint32(hdr[5]&0x7f)<<24 | uint32(hdr[6])<<16 | uint32(hdr[7])<<8 | uint32(hdr[8])
			if http2.FrameType(hdr[3]) == http2.FrameRSTStream || http2.FrameType(hdr[3]) == http2.FrameGoAway {
				t.Fatalf("frame %v on stream %d", http2.FrameType(hdr[3]), sid)
			}
			if sid == id && http2.Flags(hdr[4]).Has(http2.FlagDataEndStream) {
				break
			}
		}
		id += 2
	}
	for range 100 {
		run()
	}
	allocs := testing.AllocsPerRun(2000, run)
	t.Logf("%.2f allocations per stream", allocs)
	if allocs > 2 {
		t.Fatalf("a stream allocates %.2f times, want at most 2", allocs)
	}
}
