package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startHTTPUpstream serves handler with net/http on a loopback port (HTTP/1.1): it flushes and
// sends trailers the way real services do.
func startHTTPUpstream(t testing.TB, handler http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// TestHTTP2ThroughThePipeline sends requests over h2c and h2 and checks that each is the same
// exchange as over HTTP/1.1: routed, stripped, forwarded with the client's address, request id
// and scheme, answered with the gateway's headers; bodies stream both ways and trailers arrive.
func TestHTTP2ThroughThePipeline(t *testing.T) {
	release := make(chan struct{}, 2)
	bodyStarted := make(chan struct{}, 2)
	app := startHTTPUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("X-Seen-Proto", r.Header.Get("X-Forwarded-Proto"))
			w.Header().Set("X-Seen-For", r.Header.Get("X-Forwarded-For"))
			w.Header().Set("X-Seen-Id", r.Header.Get("X-Request-Id"))
			w.Header().Set("X-Seen-Host", r.Host)
			w.Header().Set("X-Seen-Length", fmt.Sprint(r.ContentLength))
			body, _ := io.ReadAll(r.Body) // net/http: read the body before answering over HTTP/1.1
			_, _ = w.Write(body)
		case "/upload":
			// Reads the first part, tells the test, which only then sends the rest: the body
			// reached the upstream before the client had finished sending it.
			first := make([]byte, 5)
			if _, err := io.ReadFull(r.Body, first); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			bodyStarted <- struct{}{}
			rest, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s|%d", first, len(rest))
		case "/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			<-release // the client has read the first event: the gateway did not wait for the end
			_, _ = io.WriteString(w, "data: second\n\n")
		default:
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "app %s", r.URL.RequestURI())
		}
	})
	g := startH2Gateway(t, "", fmt.Sprintf(`
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: api, match: {path_prefix: /api/}, upstream: app, strip_prefix: /api}
`, app))

	for kind, base := range map[string]string{"h2c": "http://" + g.plain, "h2": "https://" + g.tls} {
		c := g.client(kind)
		t.Run(kind+"/routed and stripped", func(t *testing.T) {
			resp, err := c.Get(base + "/api/items?x=1")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(body) != "app /items?x=1" {
				t.Fatalf("%s %d %q", resp.Proto, resp.StatusCode, body)
			}
			if resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("gateway headers missing: %v", resp.Header)
			}
		})
		t.Run(kind+"/unrouted gets the gateway's 404", func(t *testing.T) {
			resp, err := c.Get(base + "/nowhere")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 404 || !strings.Contains(string(body), `"request_id"`) {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
		})
		t.Run(kind+"/request body and forwarded fields", func(t *testing.T) {
			for _, size := range []int{0, 10, 200 << 10} {
				payload := bytes.Repeat([]byte("z"), size)
				req, _ := http.NewRequest(http.MethodPost, base+"/api/echo", bytes.NewReader(payload))
				req.Header.Set("X-Request-Id", "req-h2-1")
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !bytes.Equal(body, payload) {
					t.Fatalf("size %d: %d, %d bytes back", size, resp.StatusCode, len(body))
				}
				wantProto := map[string]string{"h2c": "http", "h2": "https"}[kind]
				if got := resp.Header.Get("X-Seen-Proto"); got != wantProto {
					t.Errorf("X-Forwarded-Proto %q, want %q", got, wantProto)
				}
				if got := resp.Header.Get("X-Seen-For"); got != "127.0.0.1" {
					t.Errorf("X-Forwarded-For %q", got)
				}
				if got := resp.Header.Get("X-Seen-Id"); got != "req-h2-1" {
					t.Errorf("X-Request-Id upstream %q", got)
				}
				if got := resp.Header.Get("X-Seen-Length"); got != fmt.Sprint(size) {
					t.Errorf("upstream Content-Length %s, want %d", got, size)
				}
			}
		})
		t.Run(kind+"/request body streams", func(t *testing.T) {
			pr, pw := io.Pipe()
			req, _ := http.NewRequest(http.MethodPost, base+"/api/upload", pr) // no length: streamed
			done := make(chan struct{})
			var resp *http.Response
			var err error
			go func() { defer close(done); resp, err = c.Do(req) }()
			if _, err := pw.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			select {
			case <-bodyStarted:
			case <-done:
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("answered before the body was read: %d %s", resp.StatusCode, b)
			}
			_, _ = pw.Write(bytes.Repeat([]byte("x"), 100_000))
			pw.Close()
			<-done
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "hello|100000" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
		})
		t.Run(kind+"/response streams", func(t *testing.T) {
			resp, err := c.Get(base + "/api/stream")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			first := make([]byte, len("data: first\n\n"))
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatal(err)
			}
			release <- struct{}{}
			rest, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if string(first)+string(rest) != "data: first\n\ndata: second\n\n" {
				t.Fatalf("%q%q", first, rest)
			}
		})
	}
}

// TestUpstreamHeadsNoClientCouldReadAre502: an upstream's "099" status line (three digits,
// which the HTTP/1.1 parser takes) and a field name with a space inside ("X Y: 1", which it
// takes too) reach no client: each is a bad gateway, to an HTTP/1.1 client and to HTTP/2 ones.
// Before, HTTP/1.1 clients got both as written; HTTP/2 clients got a :status whose header block
// broke the connection's header compression (COMPRESSION_ERROR: every stream on it failed),
// and a field name that failed the response (PROTOCOL_ERROR). The same client's next request
// on the same connection succeeds.
func TestUpstreamHeadsNoClientCouldReadAre502(t *testing.T) {
	badStatus := startRawUpstream(t, "HTTP/1.1 099 Odd\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	badName := startRawUpstream(t, "HTTP/1.1 200 OK\r\nX Y: 1\r\nContent-Length: 2\r\n\r\nok")
	app := startHTTPUpstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "app") })
	g := startH2Gateway(t, "", fmt.Sprintf(`
access_log: {enabled: false}
upstreams:
  status: {targets: ["%s"], max_fails: 0}
  name: {targets: ["%s"], max_fails: 0}
  app: {targets: ["%s"]}
routes:
  - {name: status, match: {path_prefix: /status}, upstream: status}
  - {name: name, match: {path_prefix: /name}, upstream: name}
  - {name: app, match: {path_prefix: /}, upstream: app}
`, badStatus, badName, app))

	for _, path := range []string{"/status", "/name"} {
		if r := rawRequest(t, g.plain, "GET "+path+" HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"); r.Status != 502 || strings.Contains(r.Body, "127.0.0.1") {
			t.Fatalf("HTTP/1.1 %s: %d %q, want 502 naming no upstream", path, r.Status, r.Body)
		}
	}
	for kind, base := range map[string]string{"h2c": "http://" + g.plain, "h2": "https://" + g.tls} {
		c := g.client(kind)
		for _, path := range []string{"/status", "/next", "/name", "/next"} {
			resp, err := c.Get(base + path)
			if err != nil {
				t.Fatalf("%s %s: %v", kind, path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := 200
			if path != "/next" {
				want = 502
			}
			if resp.ProtoMajor != 2 || resp.StatusCode != want {
				t.Fatalf("%s %s: %s %d %q, want %d", kind, path, resp.Proto, resp.StatusCode, body, want)
			}
		}
	}
}
