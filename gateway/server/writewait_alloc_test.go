//go:build !race

package server

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// TestWriteAndWaitRequestAllocatesNothing: with server.write_and_wait on (with and without
// parking), a proxied request on a keep-alive connection, its answer held and written by the
// wait for the next one, allocates nothing, over a real socket.
func TestWriteAndWaitRequestAllocatesNothing(t *testing.T) {
	for _, server := range []string{"{write_and_wait: 20ms}", "{write_and_wait: 20ms, idle_park_after: 10s, idle_timeout: 60s}"} {
		t.Run(server, func(t *testing.T) {
			upLn := fasthttputil.NewInmemoryListener()
			up := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.Response.SetBodyRaw(kilobyteJSON) }}
			go func() { _ = up.Serve(upLn) }()
			defer func() { _ = up.Shutdown(); _ = upLn.Close() }()
			cfg, err := config.Parse([]byte(`
server: `+server+`
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  products: {targets: ["products.internal:80"]}
routes:
  - {name: products, match: {path_prefix: /api/products}, strip_prefix: /api, upstream: products}
`), "alloc.yaml")
			if err != nil {
				t.Fatal(err)
			}
			g, err := New(cfg, Options{
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				Dial:   func(string, time.Duration) (net.Conn, error) { return upLn.Dial() },
			})
			if err != nil {
				t.Fatal(err)
			}
			if g.listeners[0].writeWait != 20*time.Millisecond {
				t.Fatalf("write_and_wait is %v on the listener", g.listeners[0].writeWait)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = g.Serve(ln) }()
			defer func() { _ = g.Shutdown(t.Context()) }()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()

			req := []byte(benchRequest)
			buf := make([]byte, 64<<10)
			size := firstResponseSize(t, c, req, buf)
			roundTrip := func() {
				if _, err := c.Write(req); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf[:size]); err != nil {
					t.Fatal(err)
				}
			}
			for range 5000 {
				roundTrip()
			}
			if !bytes.HasSuffix(buf[:size], kilobyteJSON) || !bytes.HasPrefix(buf, []byte("HTTP/1.1 200 ")) {
				t.Fatalf("unexpected response %.300q", buf[:size])
			}
			if allocs := testing.AllocsPerRun(2000, roundTrip); allocs != 0 {
				t.Fatalf("a request with write_and_wait allocates %.2f times, want 0", allocs)
			}
		})
	}
}
