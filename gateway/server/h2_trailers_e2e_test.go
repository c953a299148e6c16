package server_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
)

// TestH2RequestTrailersReachAnH2Upstream: a client's HTTP/2 request trailers (declared in the
// head, sent after the body) reach an HTTP/2 upstream after the body the gateway streamed, over
// h2c and over TLS; the response's trailers come back as before.
func TestH2RequestTrailersReachAnH2Upstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	up := &http.Server{Protocols: &protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body) // the trailers are there once the body has ended
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Trailer", "X-Upstream-Saw")
		w.Header().Set("X-Body", string(body))
		w.Header().Set("X-Proto", r.Proto)
		_, _ = io.WriteString(w, "ok")
		w.Header().Set("X-Upstream-Saw", r.Trailer.Get("X-Checksum")+"|"+r.Trailer.Get("X-Count"))
	})}
	go func() { _ = up.Serve(ln) }()
	t.Cleanup(func() { _ = up.Close() })

	g := startH2Gateway(t, "", fmt.Sprintf(`
upstreams:
  echo: {protocol: h2c, targets: ["%s"]}
routes:
  - {name: echo, match: {path_prefix: /echo}, upstream: echo}
`, ln.Addr().String()))

	for _, kind := range []string{"h2c", "h2"} {
		t.Run(kind, func(t *testing.T) {
			addr := g.plain
			scheme := "http"
			if kind == "h2" {
				addr, scheme = g.tls, "https"
			}
			// A body of unknown length, so the trailers follow a stream of DATA frames.
			pr, pw := io.Pipe()
			req, err := http.NewRequest(http.MethodPost, scheme+"://"+addr+"/echo", pr)
			if err != nil {
				t.Fatal(err)
			}
			if kind == "h2" {
				req.Host = "shop.test"
				req.URL.Host = addr
			}
			req.Trailer = http.Header{"X-Checksum": nil, "X-Count": nil}
			go func() {
				_, _ = io.WriteString(pw, "part one, ")
				_, _ = io.WriteString(pw, "part two")
				req.Trailer.Set("X-Checksum", "sha256=abc")
				req.Trailer.Set("X-Count", "2")
				_ = pw.Close()
			}()
			resp, err := g.client(kind).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(b) != "ok" || resp.ProtoMajor != 2 {
				t.Fatalf("%s %d %q", resp.Proto, resp.StatusCode, b)
			}
			if got := resp.Header.Get("X-Body"); got != "part one, part two" {
				t.Errorf("upstream read body %q", got)
			}
			if got := resp.Header.Get("X-Proto"); got != "HTTP/2.0" {
				t.Errorf("upstream spoke %s", got)
			}
			if got := resp.Trailer.Get("X-Upstream-Saw"); got != "sha256=abc|2" {
				t.Errorf("upstream saw request trailers %q; want %q", got, "sha256=abc|2")
			}
		})
	}
}
