package h2

import (
	"io"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// headRecorder is the part of x/net/http2's ResponseWriter that writeResponse uses.
type headRecorder struct {
	h    http.Header
	code int
	body []byte
}

func (r *headRecorder) Header() http.Header  { return r.h }
func (r *headRecorder) WriteHeader(code int) { r.code = code }
func (r *headRecorder) Write(p []byte) (int, error) {
	r.body = append(r.body, p...)
	return len(p), nil
}

func TestWriteResponseHead(t *testing.T) {
	const upstreamDate = "Mon, 01 Jan 2001 00:00:00 GMT"
	cases := []struct {
		name   string
		method string
		resp   func(*fasthttp.Response)
		code   int
		want   http.Header // Date aside: it is always the gateway's
		body   string
	}{
		{
			name: "fields and the length of the body", method: http.MethodGet,
			resp: func(r *fasthttp.Response) {
				r.Header.SetContentType("application/json")
				r.Header.Set("X-Request-Id", "0123")
				r.Header.Set("Server", "upstream")
				r.Header.Set("X-Uncommon-Field", "v")
				r.SetBodyString(`{"a":1}`)
			},
			code: 200, body: `{"a":1}`,
			want: http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"0123"}, "Server": {"upstream"},
				"X-Uncommon-Field": {"v"}, "Content-Length": {"7"}},
		},
		{
			name: "a repeated field keeps every value in order", method: http.MethodGet,
			resp: func(r *fasthttp.Response) {
				r.Header.SetContentType("text/plain")
				r.Header.Add("Link", "</a.css>; rel=preload")
				r.Header.Add("Vary", "Accept")
				r.Header.Add("Link", "</b.js>; rel=preload")
			},
			code: 200,
			want: http.Header{"Content-Type": {"text/plain"}, "Link": {"</a.css>; rel=preload", "</b.js>; rel=preload"},
				"Vary": {"Accept"}, "Content-Length": {"0"}},
		},
		{
			name: "connection-specific fields and Trailer are dropped, no type is sniffed", method: http.MethodGet,
			resp: func(r *fasthttp.Response) {
				r.Header.SetNoDefaultContentType(true) // as the gateway's server does
				r.Header.Set("Connection", "close")
				r.Header.Set("Keep-Alive", "timeout=5")
				r.Header.Set("Upgrade", "h2c")
				r.Header.Set("Proxy-Connection", "keep-alive")
				r.Header.Set("Te", "trailers")
				r.Header.Set("Trailer", "Grpc-Status")
				r.SetBodyString("<html>")
			},
			code: 200, body: "<html>",
			want: http.Header{"Content-Type": nil, "Content-Length": {"6"}},
		},
		{
			name: "the upstream's Date is replaced by the gateway's", method: http.MethodGet,
			resp: func(r *fasthttp.Response) {
				r.Header.SetContentType("text/plain")
				r.Header.Set("Date", upstreamDate)
				r.SetBodyString("x")
			},
			code: 200, body: "x",
			want: http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"1"}},
		},
		{
			name: "HEAD keeps the declared length and sends no body", method: http.MethodHead,
			resp: func(r *fasthttp.Response) {
				r.Header.SetContentType("text/plain")
				r.Header.SetContentLength(1234)
				r.SkipBody = true
			},
			code: 200,
			want: http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"1234"}},
		},
		{
			name: "204 has no length", method: http.MethodGet,
			resp: func(r *fasthttp.Response) {
				r.Header.SetNoDefaultContentType(true)
				r.SetStatusCode(http.StatusNoContent)
				r.Header.Set("X-Request-Id", "9")
			},
			code: 204,
			want: http.Header{"Content-Type": nil, "X-Request-Id": {"9"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var resp fasthttp.Response
			c.resp(&resp)
			rec := &headRecorder{h: http.Header{}}
			before := time.Now().Add(-time.Second)
			writeResponse(rec, &http.Request{Method: c.method}, &resp, &stream{buf: make([]byte, 1024)})
			date := rec.h["Date"]
			delete(rec.h, "Date")
			if len(date) != 1 {
				t.Fatalf("Date %q", date)
			}
			if d, err := http.ParseTime(date[0]); err != nil || d.Before(before.Truncate(time.Second)) {
				t.Errorf("Date %q is not the gateway's (%v)", date[0], err)
			}
			if rec.code != c.code || string(rec.body) != c.body {
				t.Errorf("status %d, body %q; want %d, %q", rec.code, rec.body, c.code, c.body)
			}
			if !reflect.DeepEqual(rec.h, c.want) {
				t.Errorf("head\n got %q\nwant %q", rec.h, c.want)
			}
		})
	}
}

// TestCopyFlushingFlushesOnlyUnfinishedBodies: a short read flushes what came (the producer
// paused), except when it completes a body of declared length, which the handler's end sends
// with END_STREAM.
func TestCopyFlushingFlushesOnlyUnfinishedBodies(t *testing.T) {
	cases := []struct {
		name    string
		reads   []string
		clen    int64
		flushes int
	}{
		{"declared length, complete in one read", []string{"hello"}, 5, 0},
		{"declared length, two short reads", []string{"he", "llo"}, 5, 1},
		{"no declared length", []string{"he", "llo"}, -1, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := &flushCounter{headRecorder: headRecorder{h: http.Header{}}}
			if err := copyFlushing(w, &chunks{c.reads}, make([]byte, 64), c.clen); err != nil {
				t.Fatal(err)
			}
			if string(w.body) != "hello" || w.flushes != c.flushes {
				t.Errorf("body %q, %d flushes; want %d", w.body, w.flushes, c.flushes)
			}
		})
	}
}

type flushCounter struct {
	headRecorder
	flushes int
}

func (f *flushCounter) Flush() { f.flushes++ }

// chunks returns one string per Read, then io.EOF.
type chunks struct{ left []string }

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.left) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.left[0])
	c.left = c.left[1:]
	return n, nil
}
