package server_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// jsonBody is n bytes of compressible JSON.
func jsonBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < n-2; i++ {
		fmt.Fprintf(&b, `{"id":%d,"name":"Laptop Gaming","price":1299.99},`, i)
	}
	out := b.Bytes()[:n-2]
	return append(out, "]}"...)
}

func gunzip(t *testing.T, body string) string {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(body))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("corrupt gzip: %v", err)
	}
	return string(out)
}

func compressConfig(upstream string) string {
	return fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  api: {targets: ["%s"]}
routes:
  - name: api
    match: {path_prefix: /}
    upstream: api
    compression: {}
`, upstream)
}

// TestGzip covers the policy end to end: what is compressed, what is left alone, and the
// headers either way.
func TestGzip(t *testing.T) {
	big := jsonBody(4 << 10)
	huge := jsonBody(300 << 10) // over the forwarder's buffer: arrives as a stream
	up := startUpstream(t, "api", func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/json":
			ctx.SetContentType("application/json; charset=utf-8")
			ctx.Response.Header.Set("ETag", `"v1"`)
			ctx.Response.Header.Set("Accept-Ranges", "bytes")
			ctx.SetBody(big)
		case "/small":
			ctx.SetContentType("application/json")
			ctx.SetBody(big[:1000])
		case "/png":
			ctx.SetContentType("image/png")
			ctx.SetBody(big)
		case "/pre-gzipped":
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(big)
			zw.Close()
			ctx.SetContentType("application/json")
			ctx.Response.Header.Set("Content-Encoding", "gzip")
			ctx.SetBody(b.Bytes())
		case "/no-transform":
			ctx.SetContentType("application/json")
			ctx.Response.Header.Set("Cache-Control", "no-transform")
			ctx.SetBody(big)
		case "/huge":
			ctx.SetContentType("application/json")
			ctx.SetBody(huge)
		case "/chunked":
			ctx.SetContentType("application/json")
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) { w.Write(big) })
		case "/html":
			ctx.SetContentType("text/html")
			ctx.SetBody(big)
		}
	})
	_, opt := withPolicies(t)
	gw := startGateway(t, compressConfig(up.Addr), opt)

	t.Run("compressed when accepted", func(t *testing.T) {
		r := get(t, gw.URL+"/json", "Accept-Encoding", "br;q=1, gzip;q=0.8")
		expectStatus(t, r, 200)
		if r.Headers.Get("Content-Encoding") != "gzip" || !varies(r, "Accept-Encoding") {
			t.Fatalf("Content-Encoding %q, Vary %q", r.Headers.Get("Content-Encoding"), r.Headers.Values("Vary"))
		}
		if got := gunzip(t, r.Body); got != string(big) {
			t.Fatal("the gzipped body is not the upstream's")
		}
		if len(r.Body) >= len(big)/2 || r.Headers.Get("Content-Length") != fmt.Sprint(len(r.Body)) {
			t.Fatalf("%d compressed bytes, Content-Length %q", len(r.Body), r.Headers.Get("Content-Length"))
		}
		if r.Headers.Get("ETag") != `W/"v1"` || r.Headers.Get("Accept-Ranges") != "" {
			t.Fatalf("ETag %q, Accept-Ranges %q: the identity body's validators leaked", r.Headers.Get("ETag"), r.Headers.Get("Accept-Ranges"))
		}
	})
	t.Run("identity without Accept-Encoding", func(t *testing.T) {
		r := rawRequest(t, gw.Addr, "GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if r.Status != 200 || r.Headers.Get("Content-Encoding") != "" || r.Body != string(big) || !varies(r, "Accept-Encoding") {
			t.Fatalf("status %d, Content-Encoding %q, Vary %q", r.Status, r.Headers.Get("Content-Encoding"), r.Headers.Values("Vary"))
		}
		if r.Headers.Get("ETag") != `"v1"` {
			t.Fatalf("identity ETag %q", r.Headers.Get("ETag"))
		}
	})
	for name, ae := range map[string]string{"gzip refused": "gzip;q=0, br", "identity only": "identity", "star refused with gzip": "*, gzip;q=0"} {
		t.Run(name, func(t *testing.T) {
			r := get(t, gw.URL+"/json", "Accept-Encoding", ae)
			if r.Headers.Get("Content-Encoding") != "" || r.Body != string(big) || !varies(r, "Accept-Encoding") {
				t.Fatalf("Accept-Encoding %q: Content-Encoding %q", ae, r.Headers.Get("Content-Encoding"))
			}
		})
	}
	t.Run("star accepted", func(t *testing.T) {
		r := get(t, gw.URL+"/json", "Accept-Encoding", "*")
		if r.Headers.Get("Content-Encoding") != "gzip" {
			t.Fatal("Accept-Encoding * did not get gzip")
		}
	})
	t.Run("streamed body up to max_size", func(t *testing.T) {
		accepted := up.accepted.Load()
		for range 3 {
			r := get(t, gw.URL+"/huge", "Accept-Encoding", "gzip")
			if r.Headers.Get("Content-Encoding") != "gzip" || gunzip(t, r.Body) != string(huge) {
				t.Fatalf("streamed body: Content-Encoding %q", r.Headers.Get("Content-Encoding"))
			}
		}
		if up.accepted.Load() != accepted {
			t.Fatalf("the upstream accepted %d new connections: reading the stream whole lost keep-alive", up.accepted.Load()-accepted)
		}
	})
	for _, path := range []string{"/small", "/png", "/pre-gzipped", "/no-transform", "/chunked"} {
		t.Run("left alone "+path, func(t *testing.T) {
			r := get(t, gw.URL+path, "Accept-Encoding", "gzip")
			expectStatus(t, r, 200)
			if path == "/pre-gzipped" {
				if r.Headers.Get("Content-Encoding") != "gzip" || gunzip(t, r.Body) != string(big) {
					t.Fatal("compressed twice")
				}
				return
			}
			if r.Headers.Get("Content-Encoding") != "" {
				t.Fatalf("%s compressed", path)
			}
			if varies(r, "Accept-Encoding") && path != "/chunked" {
				t.Fatalf("%s varies on Accept-Encoding though it is never compressed", path)
			}
		})
	}
	t.Run("HEAD", func(t *testing.T) {
		r := do(t, "HEAD", gw.URL+"/html", nil, "Accept-Encoding", "gzip")
		if r.Headers.Get("Content-Encoding") != "" || !varies(r, "Accept-Encoding") {
			t.Fatalf("HEAD: Content-Encoding %q", r.Headers.Get("Content-Encoding"))
		}
	})
}
